#!/usr/bin/env bash
# Scale benchmark of the operator (prints figures; not a pass/fail test): N distinct SpotPlans
# (default 1000) applied at once to a fresh control plane; reports the time until all are
# Ready, p50/p99 reconcile duration (from the controller's histogram), the controller's peak
# RSS and CPU time, and the API server's own count and mean latency of each kind of write.
# Goals: <= 60 s, p99 <= 100 ms, <= 64 MiB.
#   bench/scale.sh [N]
#   AWS=1 bench/scale.sh [N]   # live AWS data against moto over 3 regions: the API calls of a
#                              # refresh with 3 plans and with N plans (they must be equal)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
cd "$SPOTPLAN_ROOT"
N=${1:-1000}
export SPOTPLAN_TESTENV_DIR; SPOTPLAN_TESTENV_DIR=$(mktemp -d)/env
cleanup() {
  for p in ${CPID:-} ${MOTO_PID:-} ${STUB_PID:-}; do kill "$p" 2>/dev/null || true; done
  bash scripts/testenv.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
eval "$(bash scripts/testenv.sh up)"
cargo build -q --release --bin spotplan
WORK=$(dirname "$SPOTPLAN_TESTENV_DIR"); echo "work: $WORK (metrics.txt, controller.log)"
cp "$SHARED_DIR/data/spot-advisor/spot-advisor-data_2025-06-28.json" "$WORK/advisor.json"
cp "$SHARED_DIR/data/prices/ec2-linux-prices_2026-05.csv" "$WORK/prices.csv"
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
EXTRA=()
if [ -n "${AWS:-}" ]; then
  bash scripts/build-tools.sh python >/dev/null
  MOTO_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$PYVENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 & MOTO_PID=$!
  python3 "$SPOTPLAN_ROOT/bench/pricing_stub.py" "$SHARED_DIR/data/on-demand-prices/karpenter_ondemand_linux_2026-07-20.json" "$WORK/stub.port" & STUB_PID=$!
  for _ in $(seq 1 100); do [ -s "$WORK/stub.port" ] && curl -s "127.0.0.1:$MOTO_PORT" >/dev/null && break; sleep 0.3; done
  export AWS_ENDPOINT_URL_EC2="http://127.0.0.1:$MOTO_PORT" AWS_ENDPOINT_URL_PRICING="http://127.0.0.1:$(cat "$WORK/stub.port")"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
  EXTRA=(--aws --refresh-interval 20s --aws-timeout 60s)
  # A file's age is its modification time: keep the data files current for the short interval.
  ( while kill -0 $$ 2>/dev/null; do touch "$WORK/advisor.json" "$WORK/prices.csv"; sleep 2; done ) &
fi
"$CARGO_TARGET_DIR/release/spotplan" controller --advisor-data "$WORK/advisor.json" --prices "$WORK/prices.csv" \
  --listen "127.0.0.1:$PORT" --cache-dir "$WORK/cache" --leader-elect=false --log-level "${SCALE_LOG:-warn}" "${EXTRA[@]}" ${SCALE_ARGS:-} 2>"$WORK/controller.log" &
CPID=$!
until curl -sf "127.0.0.1:$PORT/readyz" >/dev/null; do
  kill -0 "$CPID" 2>/dev/null || die "the controller exited: $(tail -5 "$WORK/controller.log")"
  sleep 0.2
done
if [ -n "${AWS:-}" ]; then
  python3 "$SPOTPLAN_ROOT/bench/scale.py" --n "$N" --kubectl "$TOOLS_BIN/kubectl" --port "$PORT" --pid "$CPID" --work "$WORK" \
    --aws-check --regions us-east-1,us-west-2,eu-west-1
else
  python3 "$SPOTPLAN_ROOT/bench/scale.py" --n "$N" --kubectl "$TOOLS_BIN/kubectl" --port "$PORT" --pid "$CPID" --work "$WORK"
fi
