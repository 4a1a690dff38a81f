#!/usr/bin/env python3
"""Applies N distinct SpotPlans at once and measures the operator (see bench/scale.sh)."""
import argparse
import concurrent.futures
import json
import os
import subprocess
import time

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "us-east-2"]
MODES = ["latency", "balanced", "fault_tolerance"]
FAMILY_SETS = [None, ["m7i", "m7g", "m7a", "c7i", "c7g", "r7i", "r7g", "r7a"], ["m6i", "m6a", "m6g", "r6i", "r6a", "c6i", "c6a", "c6g"]]


def region_of(i, regions):
    return regions[i % len(regions)]


def plan(i, regions=REGIONS):
    cpu = 8 * (1 + i % 64)
    mem = cpu * (2, 4, 8)[i % 3]
    lines = [
        "apiVersion: spotplan.dev/v1alpha1", "kind: SpotPlan",
        f"metadata: {{name: plan-{i:04d}}}", "spec:",
        f"  region: {region_of(i, regions)}",
        f"  resources: {{cpu: \"{cpu}\", memory: {mem}Gi}}",
        f"  mode: {MODES[(i // 3) % 3]}",
        "  nodePool: {nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}",
    ]
    fams = FAMILY_SETS[(i // 9) % 3]
    if fams:
        lines.append(f"  instanceFamilies: [{', '.join(fams)}]")
        lines.append("  allowPreviousGeneration: true")
    if i % 5 == 0:
        lines.append("  capacity: {onDemandBase: {cpu: \"8\"}}")
    return "\n".join(lines)


def metrics(port):
    return subprocess.run(["curl", "-s", f"127.0.0.1:{port}/metrics"], capture_output=True, text=True).stdout


def quantile(text, q):
    buckets = []
    for line in text.splitlines():
        if line.startswith("spotplan_reconcile_duration_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1]
    target = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= target:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (target - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return prev_le


def metric_sum(text, prefix):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))


def calls_per_refresh(port):
    """AWS API calls (pages) made across one whole refresh of the controller."""
    def refreshes():
        return metric_sum(metrics(port), "spotplan_market_data_refreshes_total")
    def wait_past(n):
        deadline = time.monotonic() + 300
        while refreshes() <= n:
            if time.monotonic() > deadline:
                raise SystemExit("no market data refresh in 300 s")
            time.sleep(0.5)
    n = refreshes()
    wait_past(n)
    before = metric_sum(metrics(port), "spotplan_aws_api_calls_total")
    t = time.monotonic()
    wait_past(n + 1)
    return metric_sum(metrics(port), "spotplan_aws_api_calls_total") - before, time.monotonic() - t


def create(kubectl, work, plans, chunks=8):
    files = []
    for c in range(chunks):
        part = plans[c::chunks]
        if not part:
            continue
        path = os.path.join(work, f"plans-{len(plans)}-{c}.yaml")
        with open(path, "w") as f:
            f.write("\n---\n".join(part) + "\n")
        files.append(path)
    with concurrent.futures.ThreadPoolExecutor(chunks) as ex:
        list(ex.map(lambda p: subprocess.run([kubectl, "create", "-f", p], check=True, capture_output=True), files))


def wait_ready(port, n, start):
    while True:
        ready = sum(1 for l in metrics(port).splitlines() if l.startswith("spotplan_plan_ready{") and l.endswith(" 1"))
        if ready >= n:
            return
        if time.monotonic() - start > 600:
            raise SystemExit(f"only {ready} of {n} Ready after 600 s")
        time.sleep(0.25)


def aws_check(a):
    """Calls per refresh with as many plans as regions, then with all N: they must be equal."""
    regions = a.regions.split(",")
    plans = [plan(i, regions) for i in range(a.n)]
    k = len(regions)
    start = time.monotonic()
    create(a.kubectl, a.work, plans[:k])
    wait_ready(a.port, k, start)
    few, t_few = calls_per_refresh(a.port)
    create(a.kubectl, a.work, plans[k:])
    wait_ready(a.port, a.n, time.monotonic())
    many, t_many = calls_per_refresh(a.port)
    print(f"\nlive AWS data (moto), {k} regions: API calls per refresh")
    print(f"  {k:5d} SpotPlans: {few:6.0f} calls (refresh {t_few:.1f} s)")
    print(f"  {a.n:5d} SpotPlans: {many:6.0f} calls (refresh {t_many:.1f} s)")
    if few != many:
        raise SystemExit(f"calls per refresh grew with the plans: {few:.0f} -> {many:.0f}")
    print("  equal: a refresh is per region in use, never per SpotPlan")


def api_server_writes(kubectl, work):
    """The API server's own count and mean latency of each kind of write, from its metrics."""
    text = subprocess.run([kubectl, "get", "--raw", "/metrics"], capture_output=True, text=True).stdout
    with open(os.path.join(work, "apiserver-metrics.txt"), "w") as f:
        f.write(text)
    sums, counts = {}, {}
    for line in text.splitlines():
        for name, into in (("apiserver_request_duration_seconds_sum{", sums), ("apiserver_request_duration_seconds_count{", counts)):
            if not line.startswith(name):
                continue
            labels = dict(kv.split("=", 1) for kv in line[len(name):line.index("}")].replace('"', "").split(","))
            if labels.get("verb") not in ("POST", "PATCH", "PUT", "DELETE", "APPLY", "CREATE", "UPDATE"):
                continue
            key = (labels["verb"], labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else ""))
            into[key] = into.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    out = []
    for key in sorted(counts, key=lambda k: -counts[k]):
        if counts[key] >= 100:
            out.append(f"  API server {key[0]:6} {key[1]:22} {int(counts[key]):6}  mean {1000 * sums[key] / counts[key]:6.1f} ms")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--port", required=True)
    ap.add_argument("--pid", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--regions", help="comma-separated regions (the --aws-check mode)")
    ap.add_argument("--aws-check", action="store_true")
    a = ap.parse_args()
    if a.aws_check:
        return aws_check(a)
    chunks = 8
    files = []
    for c in range(chunks):
        path = os.path.join(a.work, f"plans-{c}.yaml")
        with open(path, "w") as f:
            f.write("\n---\n".join(plan(i) for i in range(c, a.n, chunks)) + "\n")
        files.append(path)
    with open(f"/proc/{a.pid}/status") as f:
        idle = next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(chunks) as ex:
        list(ex.map(lambda p: subprocess.run([a.kubectl, "create", "-f", p], check=True, capture_output=True), files))
    applied = time.monotonic() - start
    # Count Ready plans from the controller's own gauge (cheap), not by listing 1,000 objects
    # from the API server every half second (which would load the very thing being measured).
    while True:
        ready = sum(1 for l in metrics(a.port).splitlines() if l.startswith("spotplan_plan_ready{") and l.endswith(" 1"))
        if ready >= a.n:
            break
        if time.monotonic() - start > 600:
            raise SystemExit(f"only {ready} of {a.n} Ready after 600 s")
        time.sleep(0.25)
    elapsed = time.monotonic() - start
    time.sleep(2)
    m = metrics(a.port)
    with open(os.path.join(a.work, "metrics.txt"), "w") as f:
        f.write(m)
    with open(f"/proc/{a.pid}/status") as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    with open(f"/proc/{a.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    reconciles = metric_sum(m, "spotplan_reconciles_total{")
    pools = subprocess.run([a.kubectl, "get", "nodepools", "--no-headers"], capture_output=True, text=True).stdout.count("\n")
    overlays = subprocess.run([a.kubectl, "get", "nodeoverlays", "--no-headers"], capture_output=True, text=True).stdout.count("\n")
    # Cross-check with the API server once: every plan Ready=True in its status.
    out = subprocess.run([a.kubectl, "get", "spotplans", "-o",
                          "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"],
                         capture_output=True, text=True).stdout
    assert out.count("True") == a.n, f"only {out.count('True')} of {a.n} Ready in the API server"
    print(f"\n{a.n} SpotPlans applied at once ({applied:.1f} s to submit with {chunks} kubectl processes)")
    print(f"  all Ready after          {elapsed:6.1f} s    goal <= 60 s")
    print(f"  reconcile p50            {quantile(m, 0.50) * 1000:6.1f} ms")
    print(f"  reconcile p99            {quantile(m, 0.99) * 1000:6.1f} ms   goal <= 100 ms")
    print(f"  controller peak RSS      {hwm:6.1f} MiB  goal <= 64 MiB ({idle:.1f} MiB before the plans)")
    print(f"  controller CPU           {cpu:6.1f} s")
    for line in api_server_writes(a.kubectl, a.work):
        print(line)
    print(f"  reconciles {int(reconciles)}, NodePools {pools}, NodeOverlays {overlays}")


if __name__ == "__main__":
    main()
