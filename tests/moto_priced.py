"""moto's own server, with spot prices that tell instance types and zones apart.

moto 5.2.5 answers DescribeSpotPriceHistory with its own offerings (type, zone) and a fixed
price of 0.00001 for every one of them. This launcher runs the same server in the same process,
with that one answer's price taken from a table the test writes:
SPOTPLAN_MOTO_SPOT_PRICES names a JSON file {"<zone>": {"<type>": "<price>"}}; an offering the
table does not name keeps moto's 0.00001. Everything else is moto, unchanged: its offerings,
filters, paging, wire format.

Usage: python tests/moto_priced.py [moto_server's arguments]
"""

import json
import os
import sys

from moto.core.responses import ActionResult
from moto.ec2.responses.spot_instances import SpotInstances
from moto.server import main

with open(os.environ["SPOTPLAN_MOTO_SPOT_PRICES"]) as f:
    PRICES = json.load(f)


def describe_spot_price_history(self):
    instance_types_filters = self._get_param("InstanceTypes", [])
    filter_dict = self._filters_from_querystring()
    offerings = self.ec2_backend.describe_spot_price_history(
        instance_types_filters, filter_dict
    )
    history = [
        {
            "InstanceType": o["InstanceType"],
            "ProductDescription": "Linux/UNIX (Amazon VPC)",
            "SpotPrice": PRICES.get(o["Location"], {}).get(o["InstanceType"], "0.00001"),
            "AvailabilityZone": o["Location"],
            "Timestamp": "2026-12-01T00:00:00.000Z",
        }
        for o in offerings
    ]
    return ActionResult({"SpotPriceHistory": history})


SpotInstances.describe_spot_price_history = describe_spot_price_history

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
