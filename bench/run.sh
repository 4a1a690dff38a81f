#!/usr/bin/env bash
# Benchmarks spotplan and, side by side in the same run, spot-optimizer 1.2.13 (PyPI), then
# prints the medians and ratios. Both read the same Spot Advisor file; spot-optimizer gets it
# over 127.0.0.1 (SPOT_OPTIMIZER_URL), as it only fetches URLs.
#   bench/run.sh            # criterion (core) + CLI and peer timings
#   BENCH_QUICK=1 bench/run.sh   # fewer repetitions (CI smoke run)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
cd "$SPOTPLAN_ROOT"
bash scripts/build-tools.sh python >/dev/null
DATA="$SHARED_DIR/data"
[ -d "$DATA" ] || die "shared data not found at $DATA (set SPOTPLAN_SHARED)"
export SPOTPLAN_SHARED="$SHARED_DIR"

log "criterion: the core (cargo bench, sharing the release artifacts)"
# Old estimates must never pass for new ones: start from an empty criterion directory, and
# fail (with criterion's own output) if the benchmark does.
rm -rf "$CARGO_TARGET_DIR/criterion"
CRIT_LOG=$(mktemp)
crit_args=(--noplot)
[ -n "${BENCH_QUICK:-}" ] && crit_args+=(--warm-up-time 1 --measurement-time 2)
if ! cargo bench -q --bench optimizer -- "${crit_args[@]}" >"$CRIT_LOG" 2>&1; then
  cat "$CRIT_LOG" >&2
  die "the criterion benchmarks failed (output above)"
fi
grep -E "^[a-z_0-9]+|time:" "$CRIT_LOG"
rm -f "$CRIT_LOG"
BIN="$CARGO_TARGET_DIR/release/spotplan"
cargo build -q --release --bin spotplan

log "end to end: spotplan CLI vs spot-optimizer (optimize() and CLI)"
"$PYVENV/bin/python" "$SPOTPLAN_ROOT/bench/compare.py" \
  --spotplan "$BIN" --advisor "$DATA/spot-advisor/spot-advisor-data_2025-06-28.json" \
  --prices "$DATA/prices/ec2-linux-prices_2026-05.csv" \
  --criterion "$CARGO_TARGET_DIR/criterion" ${BENCH_QUICK:+--quick}

log "plan cost with and without price data (the price snapshot stands in for live spot prices)"
python3 - "$BIN" "$DATA/spot-advisor/spot-advisor-data_2025-06-28.json" "$DATA/prices/ec2-linux-prices_2026-05.csv" <<'PY'
import csv, json, statistics, subprocess, sys
bin, advisor, prices = sys.argv[1:4]
spot = {}
for row in csv.DictReader(open(prices)):
    if row["spot_usd_per_hour"]:
        spot[(row["region"], row["instance_type"])] = float(row["spot_usd_per_hour"])
requests = [("64", "256", "us-east-1", "balanced"), ("8", "32", "us-west-2", "balanced"),
            ("256", "1024", "eu-west-1", "fault_tolerance"), ("32", "64", "ap-northeast-1", "latency"),
            ("96", "384", "eu-central-1", "balanced")]
ratios = []
for cores, mem, region, mode in requests:
    def primary(extra):
        out = subprocess.run([bin, "recommend", "--cores", cores, "--memory", mem, "--region", region,
                              "--mode", mode, "--advisor-data", advisor, "-o", "json"] + extra,
                             capture_output=True, text=True, check=True).stdout
        p = json.loads(out)["instances"]
        return p["type"], p["count"], spot.get((region, p["type"]))
    blind, priced = primary([]), primary(["--prices", prices])
    if blind[2] is None or priced[2] is None:
        print(f"  {cores}/{mem} {region} {mode}: a primary has no quoted price, not compared")
        continue
    cb, cp = blind[1] * blind[2], priced[1] * priced[2]
    ratios.append(cb / cp)
    print(f"  {cores} vCPU / {mem} GiB {region} {mode}: blind {blind[1]} x {blind[0]} ${cb:.4f}/h, "
          f"with prices {priced[1]} x {priced[0]} ${cp:.4f}/h ({cb / cp:.2f}x)")
if not ratios:
    sys.exit("no request could be compared")
print(f"planned blind, the primary costs {statistics.median(ratios):.2f}x (median of {len(ratios)}) of the plan made with prices")
PY

log "live AWS data: one refresh of us-east-1 against moto"
bash "$SPOTPLAN_ROOT/bench/aws_refresh.sh"
