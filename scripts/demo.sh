#!/usr/bin/env bash
# The main job on an embedded default: a local control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, Karpenter's CRDs), real Karpenter with its kwok
# provider (and KWOK marking its fake nodes Ready), the spotplan controller fed the dated data
# snapshots in ../shared/data (read in place, pinned: their age is not judged), a SpotPlan with
# an on-demand base and an on-demand shift and a workload, the NodePools spotplan wrote and the
# NodeClaims Karpenter launched from them.
#   scripts/demo.sh            # start (first run builds the parts; cached afterwards)
#   eval "$(scripts/demo.sh env)"   # kubectl to the demo's cluster
#   scripts/demo.sh interrupt  # record two spot interruptions the way Karpenter does, and watch
#                              # the shift to on-demand and, after a calm minute, the way back
#   scripts/demo.sh down       # stop everything
#   SPOTPLAN_DEMO_PLAN=examples/spark-emr.yaml scripts/demo.sh   # also apply another example
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPOTPLAN_ROOT"
# SPOTPLAN_DEMO_DIR and SPOTPLAN_DEMO_PORT (the first of four ports) let a second demo run beside
# this one (the quickstart test does).
DEMO="${SPOTPLAN_DEMO_DIR:-$SPOTPLAN_CACHE/demo}"
PORT="${SPOTPLAN_DEMO_PORT:-18080}"
# SPOTPLAN_BIN: a spotplan binary already built (default: build it with cargo).
BIN="${SPOTPLAN_BIN:-$CARGO_TARGET_DIR/release/spotplan}"
export SPOTPLAN_TESTENV_DIR="$DEMO/env"
PLAN=demo
stop_pid() { [ -f "$DEMO/$1.pid" ] && kill "$(cat "$DEMO/$1.pid")" 2>/dev/null || true; rm -f "$DEMO/$1.pid"; }

if [ "${1:-}" = "env" ]; then
  bash scripts/testenv.sh env
  echo "export PATH=$(dirname "$BIN"):\$PATH"
  echo "export SPOTPLAN_DEMO_DIR=$DEMO SPOTPLAN_DEMO_PORT=$PORT SPOTPLAN_BIN=$BIN"
  exit 0
fi

if [ "${1:-}" = "down" ]; then
  for p in controller karpenter kwok lifecycle; do stop_pid "$p"; done
  bash scripts/testenv.sh down
  exit 0
fi

claims() {
  kubectl get nodeclaims -l "spotplan.dev/plan=$PLAN" \
    -o custom-columns='NODECLAIM:.metadata.name,NODEPOOL:.metadata.labels.karpenter\.sh/nodepool,TYPE:.metadata.labels.node\.kubernetes\.io/instance-type,ZONE:.metadata.labels.topology\.kubernetes\.io/zone,CAPACITY:.metadata.labels.karpenter\.sh/capacity-type' 2>/dev/null
}
shift_condition() {
  kubectl get spotplan "$PLAN" -o jsonpath='{range .status.conditions[?(@.type=="ShiftedToOnDemand")]}{.status} {.reason}: {.message}{end}'
}
# One line on where things stand, for progress while waiting.
standing() {
  local shifted spot od
  shifted=$(kubectl get spotplan "$PLAN" -o jsonpath='{range .status.conditions[?(@.type=="ShiftedToOnDemand")]}{.status}/{.reason}{end}')
  spot=$(claims | grep -c ' spot$' || true)
  od=$(claims | grep -c ' on-demand$' || true)
  echo "ShiftedToOnDemand=$shifted; NodeClaims: $spot spot, $od on-demand"
}
# wait_until WHAT SECONDS COMMAND...: runs COMMAND every second until it succeeds, printing
# progress every 10 seconds; false after SECONDS.
wait_until() {
  local what=$1 limit=$2 start=$SECONDS next=10
  shift 2
  until "$@" >/dev/null 2>&1; do
    local t=$((SECONDS - start))
    [ "$t" -ge "$limit" ] && return 1
    if [ "$t" -ge "$next" ]; then
      echo "  ... ${t}s, waiting for $what: $(standing)"
      next=$((next + 10))
    fi
    sleep 1
  done
}
shifted() { shift_condition | grep -q '^True'; }
shift_pool_gone() { ! kubectl get nodepool "$PLAN-shift" >/dev/null 2>&1; }
no_shift_claims() { [ -z "$(kubectl get nodeclaims -l "karpenter.sh/nodepool=$PLAN-shift" -o name 2>/dev/null)" ]; }

if [ "${1:-}" = "interrupt" ]; then
  eval "$(bash scripts/testenv.sh env)"
  # What Karpenter's interruption controller does on a spot interruption notice: a Warning
  # Event, reason SpotInterrupted, on the NodeClaim; then the NodeClaim is deleted.
  n=0
  for claim in $(kubectl get nodeclaims -l "karpenter.sh/nodepool=$PLAN,karpenter.sh/capacity-type=spot" -o jsonpath='{.items[*].metadata.name}'); do
    [ "$n" -ge 2 ] && break
    uid=$(kubectl get nodeclaim "$claim" -o jsonpath='{.metadata.uid}')
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    kubectl apply -f - >/dev/null <<EV
apiVersion: v1
kind: Event
metadata: {name: $claim.spot-interrupted, namespace: default}
involvedObject: {apiVersion: karpenter.sh/v1, kind: NodeClaim, name: $claim, uid: $uid}
reason: SpotInterrupted
type: Warning
message: Spot interruption warning was triggered
source: {component: karpenter}
firstTimestamp: "$now"
lastTimestamp: "$now"
count: 1
EV
    kubectl delete nodeclaim "$claim" --wait=false >/dev/null
    echo "interrupted $claim"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || die "no spot NodeClaim of $PLAN to interrupt: run scripts/demo.sh first"
  echo "# Waiting for spotplan to count them (two within 10 minutes shift the plan to on-demand)..."
  wait_until "the shift" 60 shifted || true
  echo; echo "# ShiftedToOnDemand: $(shift_condition)"
  kubectl get spotplan "$PLAN" -o jsonpath='{range .status.observedInterruptions[*]}  {.instanceType} in {.zone}: {.count}{"\n"}{end}'
  kubectl scale deployment "$PLAN" --replicas=6 >/dev/null
  echo; echo "# Two more pods while shifted: Karpenter launches them from the on-demand shift NodePool..."
  wait_until "two new nodes" 60 bash -c "[ \"\$(kubectl get nodeclaims -l karpenter.sh/nodepool=$PLAN-shift -o name | wc -l)\" -ge 2 ]" || true
  claims
  echo "# (The shift pool is on-demand: Karpenter picks the cheapest on-demand price among its"
  echo "#  types that fits a pod, so its type can differ from the spot primary, which is ranked"
  echo "#  by spot price with the band premium.)"
  echo; echo "# Waiting for calm (60s without an interruption), then the way back to spot, one node at a time..."
  if ! wait_until "the shift NodePool to go" 480 shift_pool_gone; then
    echo "# ShiftedToOnDemand: $(shift_condition)"
    echo "# Why not: each NodeClaim's lifecycle as Karpenter sees it, its nodes' taints, and"
    echo "# Karpenter's disruption decisions"
    kubectl get nodeclaims -o custom-columns='NODECLAIM:.metadata.name,POOL:.metadata.labels.karpenter\.sh/nodepool,CAPACITY:.metadata.labels.karpenter\.sh/capacity-type,LAUNCHED:.status.conditions[?(@.type=="Launched")].status,REGISTERED:.status.conditions[?(@.type=="Registered")].status,INITIALIZED:.status.conditions[?(@.type=="Initialized")].status,DRIFTED:.status.conditions[?(@.type=="Drifted")].status,DELETING:.metadata.deletionTimestamp' 2>&1 || true
    kubectl get nodes -o custom-columns='NODE:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,TAINTS:.spec.taints[*].key' 2>&1 || true
    kubectl get nodepool "$PLAN-shift" -o jsonpath='{.spec.template.spec.requirements}{"\n"}{.spec.limits}{"\n"}{.status.conditions}{"\n"}' 2>&1 || true
    grep -iE 'disrupt|drift|"level":"ERROR"|initialized|unable|cluster state' "$DEMO/karpenter.log" | tail -25 | cut -c1-400 || true
    die "the shift's nodes did not move back within 8 minutes (Karpenter drifts only initialized nodes: see $DEMO/karpenter.log and $DEMO/kwok.log)"
  fi
  echo "# ShiftedToOnDemand: $(shift_condition)"
  # The last shift node may still be draining when its NodePool goes: wait until it is gone.
  wait_until "the last shift node to drain" 120 no_shift_claims || true
  echo; echo "# The shift's on-demand nodes were replaced by spot ones, one at a time:"; claims
  echo; kubectl get events --field-selector "involvedObject.name=$PLAN" --sort-by=.lastTimestamp \
    -o custom-columns='REASON:.reason,MESSAGE:.message' 2>/dev/null | grep -E "REASON|Shift|Return|Demoted" || true
  exit 0
fi

mkdir -p "$DEMO"
if [ -z "${SPOTPLAN_BIN:-}" ]; then
  need cargo "install Rust (rustup)"
  log "building spotplan (release profile, shared with the tests)"
  cargo build -q --release --bin spotplan
fi
bash scripts/build-tools.sh karpenter kwok
eval "$(bash scripts/testenv.sh up)"

# The dated snapshots, read in place: the Spot Advisor's of 2025-06-28 and the price list of
# 2026-05. --file-max-age none pins them (their age is not judged, and status says so); without
# it, files are stale once unmodified for twice the refresh cycle.
ADVISOR="$SHARED_DIR/data/spot-advisor/spot-advisor-data_2025-06-28.json"
PRICES="$SHARED_DIR/data/prices/ec2-linux-prices_2026-05.csv"
if [ -f "$DEMO/controller.pid" ] && kill -0 "$(cat "$DEMO/controller.pid")" 2>/dev/null; then
  kill "$(cat "$DEMO/controller.pid")"; sleep 1
fi
"$BIN" controller --advisor-data "$ADVISOR" --prices "$PRICES" --file-max-age none \
  --listen 127.0.0.1:$PORT --cache-dir "$DEMO/cache" --refresh-interval 24h >"$DEMO/controller.log" 2>&1 &
echo $! > "$DEMO/controller.pid"
for _ in $(seq 1 100); do curl -sf 127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.2; done
curl -sf 127.0.0.1:$PORT/readyz >/dev/null || die "the controller did not become ready (log: $DEMO/controller.log)"

# Real Karpenter (kwok provider) choosing among the whole catalog with the snapshot's prices;
# KWOK marks its fake nodes Ready; and the node lifecycle controller's taint removal, which the
# local kube-controller-manager runs without.
"$BIN" render --format kwok-instance-types --region us-east-1 --advisor-data "$ADVISOR" \
  --prices "$PRICES" > "$DEMO/kwok-instance-types.json"
for p in karpenter kwok lifecycle; do stop_pid "$p"; done
KUBECONFIG="$KUBECONFIG" DISABLE_LEADER_ELECTION=true METRICS_PORT=$((PORT + 1)) HEALTH_PROBE_PORT=$((PORT + 2)) \
  INSTANCE_TYPES_FILE_PATH="$DEMO/kwok-instance-types.json" SYSTEM_NAMESPACE=kube-system \
  FEATURE_GATES=NodeOverlay=true BATCH_IDLE_DURATION=1s BATCH_MAX_DURATION=3s "$TOOLS_BIN/karpenter-kwok" >"$DEMO/karpenter.log" 2>&1 &
echo $! > "$DEMO/karpenter.pid"
stages=(); for f in "$TOOLS_BIN"/kwok-stages/*.yaml; do stages+=(--config "$f"); done
"$TOOLS_BIN/kwok" --kubeconfig "$KUBECONFIG" --manage-all-nodes --server-address "127.0.0.1:$((PORT + 3))" "${stages[@]}" >"$DEMO/kwok.log" 2>&1 &
echo $! > "$DEMO/kwok.pid"
# The not-ready taint of a Node KWOK marked Ready goes, by a patch conditional on the Node's
# resourceVersion: Karpenter edits the same taint list, and a blind write could restore its
# karpenter.sh/unregistered taint (tests/karpenter_e2e.rs, node_lifecycle). A conflict is retried
# on the next tick, so the loop must outlive a failed command: without `set +e` the script's
# errexit and pipefail ended it at the first conflict, and under load no node was initialized
# again (Karpenter drifts only initialized nodes, so the shift never came back).
( set +e +o pipefail
  while true; do
    kubectl get nodes -o json 2>/dev/null | python3 -c '
import json, sys
for n in json.load(sys.stdin)["items"]:
    taints = n["spec"].get("taints", [])
    kept = [t for t in taints if t["key"] != "node.kubernetes.io/not-ready"]
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
    if ready and len(kept) < len(taints):
        print(n["metadata"]["name"], json.dumps({"metadata": {"resourceVersion": n["metadata"]["resourceVersion"]}, "spec": {"taints": kept}}))
' | while read -r n patch; do
      kubectl patch node "$n" --type merge -p "$patch" >/dev/null 2>&1 \
        || echo "$(date -u +%T) $n: taint patch not applied (a conflict?), retried next tick"
    done
    sleep 1
  done ) >"$DEMO/lifecycle.log" 2>&1 & echo $! > "$DEMO/lifecycle.pid"
kubectl apply -f - >/dev/null <<'NC'
apiVersion: karpenter.kwok.sh/v1alpha1
kind: KWOKNodeClass
metadata: {name: default}
NC

# The example: 64 vCPU / 256 GiB in us-east-1 with a floor of 16 vCPU on on-demand, that shifts
# to on-demand after two spot interruptions within ten minutes and comes back after a calm
# minute; a workload on it.
kubectl apply -f - <<'SP'
apiVersion: spotplan.dev/v1alpha1
kind: SpotPlan
metadata: {name: demo}
spec:
  region: us-east-1
  resources: {cpu: "64", memory: 256Gi}
  mode: balanced
  capacity:
    onDemandBase: {cpu: "16"}
    onDemandShift: {interruptions: 2, window: 10m, calm: 60s}
  nodePool:
    nodeClassRef: {group: karpenter.kwok.sh, kind: KWOKNodeClass, name: default}
SP
kubectl wait --for=condition=Ready --timeout=60s "spotplan/$PLAN" >/dev/null
kubectl apply -f - >/dev/null <<'WL'
apiVersion: apps/v1
kind: Deployment
metadata: {name: demo, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      nodeSelector: {spotplan.dev/plan: demo}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: demo}}}
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
        resources: {requests: {cpu: "7", memory: 28Gi}}
WL
if [ -n "${SPOTPLAN_DEMO_PLAN:-}" ]; then kubectl apply -f "$SPOTPLAN_DEMO_PLAN"; fi
echo
kubectl get spotplans -o wide
echo
echo "# Market data (status.dataSources):"
kubectl get spotplan "$PLAN" -o jsonpath='{range .status.dataSources[*]}  {.source}: {.message}{"\n"}{end}'
echo
echo "# The NodePools spotplan wrote for $PLAN (the spot pool's instance types, by rank):"
kubectl get nodepools -l "spotplan.dev/plan=$PLAN" \
  -o custom-columns='NODEPOOL:.metadata.name,WEIGHT:.spec.weight,CAPACITY:.spec.template.spec.requirements[?(@.key=="karpenter.sh/capacity-type")].values,LIMIT CPU:.spec.limits.cpu,READY:.status.conditions[?(@.type=="Ready")].status'
kubectl get nodepool "$PLAN" -o jsonpath='{.spec.template.spec.requirements[?(@.key=="node.kubernetes.io/instance-type")].values}'; echo
echo
echo "# The ranked plan (status.plan.instanceTypes):"
{
  echo "RANK TYPE COUNT INTERRUPTION SPOT_\$/H(REQUEST) BAND_PREMIUM RANKED_\$/H"
  kubectl get spotplan "$PLAN" -o jsonpath='{range .status.plan.instanceTypes[*]}{.rank} {.name} x{.count} {.interruption} {.totalSpotUsdPerHour} +{.bandPremiumPct}% {.rankedUsdPerHour}{"\n"}{end}'
} | awk '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } if (NF > n) n = NF }
  END { for (r = 1; r <= NR; r++) { l = ""; for (i = 1; i <= n; i++) l = l sprintf("%-" (w[i] + 2) "s", c[r, i]); print l } }'
mode=$(kubectl get spotplan "$PLAN" -o jsonpath='{.spec.mode}')
echo "# Why this order: types whose node count is in the mode's range come first, then the request's"
echo "# spot \$/h plus $mode's premium for the type's interruption band (RANKED), so a cheaper type in"
echo "# a worse band can rank below a dearer one in a better band."
wait_until "4 NodeClaims" 90 bash -c "[ \"\$(kubectl get nodeclaims -l spotplan.dev/plan=$PLAN -o name | wc -l)\" -ge 4 ]" || true
wait_until "the on-demand base" 60 bash -c "kubectl get nodeclaims -l spotplan.dev/plan=$PLAN -o jsonpath='{.items[*].metadata.labels.karpenter\\.sh/capacity-type}' | grep -q on-demand" || true
echo
echo "# NodeClaims Karpenter launched for the workload's 4 pods:"
claims
primary=$(kubectl get spotplan "$PLAN" -o jsonpath='{.status.plan.primary}')
count=$(kubectl get spotplan "$PLAN" -o jsonpath='{.status.plan.primaryCount}')
echo
echo "# Risk pricing: the NodeOverlays spotplan wrote for the spot NodePool $PLAN (Karpenter's verdict),"
echo "# and which NodeClaims Karpenter launched with those prices (karpenter.sh/price-overlay-applied):"
kubectl get spotplan "$PLAN" -o jsonpath='  {.status.conditions[?(@.type=="RiskPricing")].reason}: {.status.conditions[?(@.type=="RiskPricing")].message}{"\n"}'
kubectl get nodeoverlays -l "spotplan.dev/plan=$PLAN" \
  -o custom-columns='OVERLAY:.metadata.name,ADJUSTMENT:.spec.priceAdjustment,WEIGHT:.spec.weight,TYPES:.spec.requirements[?(@.key=="node.kubernetes.io/instance-type")].values,VALID:.status.conditions[?(@.type=="ValidationSucceeded")].status'
kubectl get nodeclaims -l "spotplan.dev/plan=$PLAN" \
  -o custom-columns='NODECLAIM:.metadata.name,NODEPOOL:.metadata.labels.karpenter\.sh/nodepool,PRICE_OVERLAY_APPLIED:.metadata.annotations.karpenter\.sh/price-overlay-applied'
echo "# (The on-demand NodePool carries no premium, so its claims have no annotation. On AWS the"
echo "# annotated claims' CreateFleet is capacity-optimized-prioritized in the plan's order; kwok"
echo "# launches the cheapest raw price, so here the annotation is what shows.)"
echo "# Why these counts: the plan sizes the whole request (64 vCPU / 256 GiB = $count x $primary);"
echo "# Karpenter sizes nodes for pods: 4 pods of 7 vCPU / 28 GiB that may not share a node need 4"
echo "# nodes. The on-demand base NodePool (higher weight, limits.cpu 16) takes the first 16 vCPU;"
echo "# the rest land on spot, where Karpenter picks the cheapest listed type that fits a pod."
cat <<MSG

The control plane, Karpenter and the controller keep running. Try:
  eval "\$(scripts/demo.sh env)"       # kubectl to the demo's cluster
  kubectl get spotplans,nodepools,nodeclaims
  scripts/demo.sh interrupt           # two spot interruptions: the shift to on-demand and back
  kubectl apply -f examples/          # the other examples
  kubectl explain spotplan.spec.capacity.onDemandShift
  curl -s 127.0.0.1:$PORT/metrics | grep ^spotplan_
  scripts/demo.sh down                # stop everything
MSG
