#!/usr/bin/env python3
"""Runs the real spot-optimizer (PyPI) on every request of a grid and prints its picks as JSON.

    SPOT_OPTIMIZER_URL=http://127.0.0.1:PORT/spot-advisor-data.json \
    SPOT_OPTIMIZER_DB_PATH=/tmp/x.db python run_peer.py grid.json

One process for the whole grid: spot-optimizer loads the advisor file into DuckDB once.
Output: [{"ok": {...spot-optimizer's dict...}} | {"error": "..."}] in grid order.
"""
import json
import sys

from spot_optimizer import optimize


def main():
    grid = json.load(open(sys.argv[1]))
    out = []
    for row in grid["requests"]:
        try:
            out.append({"ok": optimize(
                cores=row["cores"],
                memory=row["memory"],
                region=row["region"],
                ssd_only=row.get("ssd_only", False),
                arm_instances=row.get("arm", True),
                instance_family=row.get("families") or None,
                emr_version=row.get("emr_version"),
                mode=row.get("mode", "balanced"),
            )})
        except Exception as e:  # the peer raises ValueError when nothing fits
            out.append({"error": str(e)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
