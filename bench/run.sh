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
