#!/usr/bin/env python3
"""Runs the real spot-optimizer (PyPI) on every request of a grid and prints its picks as JSON.

    SPOT_OPTIMIZER_URL=http://127.0.0.1:PORT/spot-advisor-data.json \
    SPOT_OPTIMIZER_DB_PATH=/tmp/x.db python run_peer.py requests.json

Rows with "cli": true run the `spot-optimizer` command with its default flags (only --cores,
--memory, --region, --mode), as a user would; the others call its API `optimize()` in this
process (it loads the advisor file into DuckDB once).
Output, in grid order: {"ok": {...its dict...}} | {"none": "..."} when it found nothing |
{"crash": "..."} for any other failure.
"""
import json
import os
import subprocess
import sys

from spot_optimizer import optimize

NOTHING = "No suitable instances found"


def run_cli(row):
    exe = os.path.join(os.path.dirname(sys.executable), "spot-optimizer")
    cmd = [exe, "--cores", str(row["cores"]), "--memory", str(row["memory"]),
           "--region", row["region"], "--mode", row["mode"]]
    # Its own database: the API in this process holds a lock on the other.
    env = dict(os.environ, SPOT_OPTIMIZER_DB_PATH=os.environ["SPOT_OPTIMIZER_DB_PATH"] + ".cli")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if p.returncode == 0:
        try:
            return {"ok": json.loads(p.stdout)}
        except ValueError:
            return {"crash": "unparsable output: " + p.stdout[:500]}
    if NOTHING in p.stderr:
        return {"none": p.stderr.strip().splitlines()[-1]}
    return {"crash": "exit %d: %s" % (p.returncode, p.stderr.strip()[-500:])}


def run_api(row):
    try:
        return {"ok": optimize(
            cores=row["cores"],
            memory=row["memory"],
            region=row["region"],
            ssd_only=row.get("ssd_only", False),
            arm_instances=row.get("arm", True),
            instance_family=row.get("families") or None,
            emr_version=row.get("emr_version"),
            mode=row.get("mode", "balanced"),
        )}
    except ValueError as e:
        if NOTHING in str(e):
            return {"none": str(e)}
        return {"crash": "%s: %s" % (type(e).__name__, e)}
    except Exception as e:  # anything else is the peer failing, not "nothing fits"
        return {"crash": "%s: %s" % (type(e).__name__, e)}


def main():
    grid = json.load(open(sys.argv[1]))
    out = [run_cli(r) if r.get("cli") else run_api(r) for r in grid["requests"]]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
