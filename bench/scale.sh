#!/usr/bin/env bash
# Scale benchmark of the operator (prints figures; not a pass/fail test): N distinct SpotPlans
# (default 1000) applied at once to a fresh control plane; reports the time until all are
# Ready, p50/p99 reconcile duration (from the controller's histogram) and the controller's peak
# RSS. Goals: <= 60 s, p99 <= 100 ms, <= 64 MiB.
#   bench/scale.sh [N]
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
cd "$SPOTPLAN_ROOT"
N=${1:-1000}
export SPOTPLAN_TESTENV_DIR; SPOTPLAN_TESTENV_DIR=$(mktemp -d)/env
cleanup() { [ -n "${CPID:-}" ] && kill "$CPID" 2>/dev/null; bash scripts/testenv.sh down >/dev/null 2>&1 || true; }
trap cleanup EXIT
eval "$(bash scripts/testenv.sh up)"
cargo build -q --release --bin spotplan
WORK=$(dirname "$SPOTPLAN_TESTENV_DIR")
cp "$SHARED_DIR/data/spot-advisor/spot-advisor-data_2025-06-28.json" "$WORK/advisor.json"
cp "$SHARED_DIR/data/prices/ec2-linux-prices_2026-05.csv" "$WORK/prices.csv"
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$CARGO_TARGET_DIR/release/spotplan" controller --advisor-data "$WORK/advisor.json" --prices "$WORK/prices.csv" \
  --listen "127.0.0.1:$PORT" --cache-dir "$WORK/cache" --leader-elect=false --log-level "${SCALE_LOG:-warn}" ${SCALE_ARGS:-} 2>"$WORK/controller.log" &
CPID=$!
until curl -sf "127.0.0.1:$PORT/readyz" >/dev/null; do
  kill -0 "$CPID" 2>/dev/null || die "the controller exited: $(tail -5 "$WORK/controller.log")"
  sleep 0.2
done
python3 "$SPOTPLAN_ROOT/bench/scale.py" --n "$N" --kubectl "$TOOLS_BIN/kubectl" --port "$PORT" --pid "$CPID" --work "$WORK"
