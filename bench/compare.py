#!/usr/bin/env python3
"""Times spotplan and spot-optimizer in one run and prints medians and ratios.

Request: 64 vCPU / 256 GiB in us-east-1, balanced mode, ARM allowed, same advisor file.
- spotplan core: criterion's median for `recommend_64vcpu_256gib_us_east_1` (read from its JSON).
- spotplan CLI: wall time of `spotplan recommend ... -o json` with local files, N runs.
- spot-optimizer optimize(): in-process, warm (its DuckDB already loaded), N calls.
- spot-optimizer CLI: wall time of `spot-optimizer ...`, warm DB, N runs.
"""
import argparse
import functools
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def serve(path):
    directory, name = os.path.split(path)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=directory)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/{name}"


def wall(cmd, runs, env=None):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fmt(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spotplan", required=True)
    ap.add_argument("--advisor", required=True)
    ap.add_argument("--prices", required=True)
    ap.add_argument("--criterion", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    runs, calls = (5, 20) if a.quick else (30, 200)

    url = serve(a.advisor)
    tmp = tempfile.mkdtemp()
    env = dict(os.environ, SPOT_OPTIMIZER_URL=url, SPOT_OPTIMIZER_DB_PATH=os.path.join(tmp, "so.db"))
    os.environ.update(env)

    ours_cli = [a.spotplan, "recommend", "--cores", "64", "--memory", "256", "--region", "us-east-1",
                "--advisor-data", a.advisor, "--prices", a.prices, "-o", "json"]
    wall(ours_cli, 3)
    spotplan_cli = wall(ours_cli, runs)

    from spot_optimizer import optimize  # noqa: E402  (reads SPOT_OPTIMIZER_* at import)
    first = time.perf_counter()
    optimize(cores=64, memory=256, region="us-east-1", mode="balanced")
    cold = time.perf_counter() - first
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        optimize(cores=64, memory=256, region="us-east-1", mode="balanced")
        times.append(time.perf_counter() - t)
    peer_optimize = statistics.median(times)

    peer = shutil.which("spot-optimizer", path=os.path.dirname(sys.executable))
    # DuckDB allows one process per database file: the CLI gets its own (warmed by the first run).
    env = dict(env, SPOT_OPTIMIZER_DB_PATH=os.path.join(tmp, "so-cli.db"))
    peer_cmd = [peer, "--cores", "64", "--memory", "256", "--region", "us-east-1", "--arm-instances"]
    wall(peer_cmd, 1, env)
    peer_cli = wall(peer_cmd, max(3, runs // 3), env)

    estimates = os.path.join(a.criterion, "recommend_64vcpu_256gib_us_east_1", "new", "estimates.json")
    if not os.path.exists(estimates):
        sys.exit(f"error: criterion wrote no estimate at {estimates}: the benchmark did not run")
    if time.time() - os.path.getmtime(estimates) > 3600:
        sys.exit(f"error: {estimates} is more than an hour old: not this run's figure")
    with open(estimates) as f:
        core = json.load(f)["median"]["point_estimate"] / 1e9

    rows = [
        ("one recommendation, in process", core, peer_optimize, "50 us"),
        ("CLI end to end, local data", spotplan_cli, peer_cli, "10 ms, >= 50x"),
    ]
    print(f"\n64 vCPU / 256 GiB, us-east-1, balanced; medians ({runs} CLI runs, {calls} optimize() calls)")
    print(f"{'':34} {'spotplan':>12} {'spot-optimizer':>15} {'ratio':>9}  target")
    for name, ours, theirs, target in rows:
        print(f"{name:34} {fmt(ours):>12} {fmt(theirs):>15} {theirs / ours:>8.0f}x  <= {target}")
    missed = []
    if core > 50e-6:
        missed.append(f"one recommendation took {fmt(core)} (target 50 us)")
    if spotplan_cli > 10e-3 or peer_cli / spotplan_cli < 50:
        missed.append(f"the CLI took {fmt(spotplan_cli)}, {peer_cli / spotplan_cli:.0f}x the peer's (target 10 ms, 50x)")
    for m in missed:
        print(f"TARGET MISSED: {m}")
    print(f"spot-optimizer first optimize() (loads the advisor into DuckDB): {fmt(cold)}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
