#!/usr/bin/env python3
"""A Price List (GetProducts, JSON 1.1) endpoint for benchmarks: moto has no Price List.

It answers every region with the us-east-1 prices of Karpenter's generated table
(../shared/data/on-demand-prices), 100 products a page, so a benchmark counts the calls and
pages a real refresh makes. It is a call-count stand-in, not a source of prices for any region
but us-east-1.

    pricing_stub.py PRICES_JSON PORT_FILE
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PRICES = json.load(open(sys.argv[1]))["prices"]["us-east-1"]
PAGE = 100


def product(region, ty, usd):
    sku = "SKU" + ty.replace(".", "").upper()
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "sku": sku, "attributes": {
            "instanceType": ty, "regionCode": region, "operatingSystem": "Linux", "tenancy": "Shared",
            "preInstalledSw": "NA", "capacitystatus": "Used", "licenseModel": "No License required"}},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {sku + ".T": {"priceDimensions": {sku + ".T.D": {
            "unit": "Hrs", "pricePerUnit": {"USD": "%.10f" % usd}}}}}},
    })


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        region = next((f["Value"] for f in body.get("Filters", []) if f["Field"] == "regionCode"), "us-east-1")
        start = int((body.get("NextToken") or "0").removeprefix("page-") or 0)
        items = sorted(PRICES.items())
        page = [product(region, t, p) for t, p in items[start:start + PAGE]]
        out = {"FormatVersion": "aws_v1", "PriceList": page}
        if start + PAGE < len(items):
            out["NextToken"] = "page-%d" % (start + PAGE)
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.1")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[2], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
