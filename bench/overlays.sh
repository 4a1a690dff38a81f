#!/usr/bin/env bash
# What risk pricing costs Karpenter (prints figures; not a pass/fail test): N SpotPlans (default
# 100) on the test control plane with real Karpenter (kwok provider, NodeOverlay=true) fed the
# whole us-east-1 catalog, once with spotplan's NodeOverlays and once with --risk-pricing off.
# Reads Karpenter's own controller-runtime metrics for its NodeOverlay controller
# (controller_runtime_reconcile_time_seconds{controller="nodeoverlay.controller"}): reconciles,
# total and mean time, once every plan is Ready and the overlay controller has been quiet 10 s.
#   bench/overlays.sh [N]
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
cd "$SPOTPLAN_ROOT"
N=${1:-100}
bash scripts/build-tools.sh karpenter kwok >/dev/null
cargo build -q --release --bin spotplan

metric() { # the overlay controller's reconcile count and time sum
  curl -s "127.0.0.1:$KPORT/metrics" | awk -v m="$1" '$1 ~ "^controller_runtime_reconcile_time_seconds_"m"\\{.*controller=\"nodeoverlay.controller\"" {s += $2} END {printf "%.6f", s}'
}

run() { # $1: auto or off
  local mode=$1
  export SPOTPLAN_TESTENV_DIR; SPOTPLAN_TESTENV_DIR=$(mktemp -d)/env
  eval "$(bash scripts/testenv.sh up)"
  local work; work=$(dirname "$SPOTPLAN_TESTENV_DIR")
  cp "$SHARED_DIR/data/spot-advisor/spot-advisor-data_2025-06-28.json" "$work/advisor.json"
  cp "$SHARED_DIR/data/prices/ec2-linux-prices_2026-05.csv" "$work/prices.csv"
  "$CARGO_TARGET_DIR/release/spotplan" render --format kwok-instance-types --region us-east-1 \
    --advisor-data "$work/advisor.json" --prices "$work/prices.csv" > "$work/types.json"
  KPORT=$(free_port)
  KUBECONFIG="$KUBECONFIG" DISABLE_LEADER_ELECTION=true METRICS_PORT="$KPORT" HEALTH_PROBE_PORT=0 \
    INSTANCE_TYPES_FILE_PATH="$work/types.json" SYSTEM_NAMESPACE=kube-system FEATURE_GATES=NodeOverlay=true \
    "$TOOLS_BIN/karpenter-kwok" > "$work/karpenter.log" 2>&1 & KPID=$!
  local cport; cport=$(free_port)
  "$CARGO_TARGET_DIR/release/spotplan" controller --advisor-data "$work/advisor.json" --prices "$work/prices.csv" \
    --file-max-age none --listen "127.0.0.1:$cport" --cache-dir "$work/cache" --leader-elect=false \
    --risk-pricing "$mode" --log-level warn 2> "$work/controller.log" & CPID=$!
  until curl -sf "127.0.0.1:$KPORT/metrics" >/dev/null; do kill -0 "$KPID" || die "karpenter exited: $(tail -5 "$work/karpenter.log")"; sleep 0.5; done
  "$TOOLS_BIN/kubectl" apply -f - >/dev/null <<<'apiVersion: karpenter.kwok.sh/v1alpha1
kind: KWOKNodeClass
metadata: {name: default}'
  python3 - "$N" > "$work/plans.yaml" <<'PY'
import sys
n = int(sys.argv[1])
modes = ["balanced", "latency", "fault_tolerance"]
for i in range(n):
    print(f"""---
apiVersion: spotplan.dev/v1alpha1
kind: SpotPlan
metadata: {{name: p{i}}}
spec:
  region: us-east-1
  resources: {{cpu: "{8 + 8 * (i % 32)}", memory: {32 + 32 * (i % 32)}Gi}}
  mode: {modes[i % 3]}
  nodePool:
    nodeClassRef: {{group: karpenter.kwok.sh, kind: KWOKNodeClass, name: default}}""")
PY
  local t0; t0=$(date +%s.%N)
  "$TOOLS_BIN/kubectl" apply -f "$work/plans.yaml" >/dev/null
  local ready=0
  for _ in $(seq 1 600); do
    ready=$("$TOOLS_BIN/kubectl" get spotplans -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
    [ "$ready" -ge "$N" ] && break
    sleep 1
  done
  [ "$ready" -ge "$N" ] || die "only $ready of $N plans Ready"
  local quiet=0 last=""
  while [ "$quiet" -lt 10 ]; do
    local now; now=$(metric count)
    if [ "$now" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; last=$now; fi
    sleep 1
  done
  local overlays; overlays=$("$TOOLS_BIN/kubectl" get nodeoverlays -o name | wc -l)
  local pools; pools=$("$TOOLS_BIN/kubectl" get nodepools -o name | wc -l)
  local count sum; count=$(metric count); sum=$(metric sum)
  python3 - "$mode" "$overlays" "$pools" "$count" "$sum" "$t0" <<'PY'
import sys, time
mode, overlays, pools, count, total, t0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
mean = total / count * 1000 if count else 0.0
print(f"  risk pricing {mode:4}: {pools} NodePools, {overlays} NodeOverlays; Karpenter's overlay controller: "
      f"{count:.0f} reconciles, {total:.2f} s in all, mean {mean:.1f} ms (all Ready {time.time() - t0:.0f} s after apply)")
PY
  kill "$CPID" "$KPID" 2>/dev/null || true
  wait "$CPID" "$KPID" 2>/dev/null || true
  bash scripts/testenv.sh down >/dev/null 2>&1 || true
}

trap 'kill ${CPID:-} ${KPID:-} 2>/dev/null || true; bash scripts/testenv.sh down >/dev/null 2>&1 || true' EXIT
echo "$N SpotPlans with real Karpenter (kwok), the whole us-east-1 catalog:"
run auto
run off
