#!/usr/bin/env bash
# The main job on an embedded default: a local control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, Karpenter's CRDs), real Karpenter with its kwok
# provider (and KWOK marking its fake nodes Ready), the spotplan controller fed the data
# snapshots in ../shared/data, a SpotPlan with an on-demand shift and a workload, the NodePool
# spotplan wrote and the NodeClaims Karpenter launched from it.
#   scripts/demo.sh            # start (first run builds the parts; cached afterwards)
#   scripts/demo.sh interrupt  # record two spot interruptions the way Karpenter does, and watch
#                              # the shift to on-demand and, after a calm minute, the way back
#   scripts/demo.sh down       # stop everything
#   SPOTPLAN_DEMO_PLAN=examples/spark-emr.yaml scripts/demo.sh   # also apply another example
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPOTPLAN_ROOT"
export SPOTPLAN_TESTENV_DIR="$SPOTPLAN_CACHE/demo/env"
DEMO="$SPOTPLAN_CACHE/demo"
PLAN=demo
stop_pid() { [ -f "$DEMO/$1.pid" ] && kill "$(cat "$DEMO/$1.pid")" 2>/dev/null || true; rm -f "$DEMO/$1.pid"; }

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
  for _ in $(seq 1 60); do shift_condition | grep -q '^True' && break; sleep 1; done
  echo; echo "# ShiftedToOnDemand: $(shift_condition)"
  kubectl get spotplan "$PLAN" -o jsonpath='{range .status.observedInterruptions[*]}  {.instanceType} in {.zone}: {.count}{"\n"}{end}'
  kubectl scale deployment "$PLAN" --replicas=5 >/dev/null
  sleep 15; echo; echo "# New capacity while shifted (two more pods):"; claims
  echo; echo "# Waiting for calm (60s without an interruption), then the way back to spot..."
  for _ in $(seq 1 240); do kubectl get nodepool "$PLAN-shift" >/dev/null 2>&1 || break; sleep 2; done
  echo "# ShiftedToOnDemand: $(shift_condition)"
  if kubectl get nodepool "$PLAN-shift" >/dev/null 2>&1; then
    claims
    die "the shift's nodes did not move back within 8 minutes (Karpenter drifts only initialized nodes: see $DEMO/karpenter.log and $DEMO/kwok.log)"
  fi
  # The last shift node may still be draining when its NodePool goes: wait until it is gone.
  for _ in $(seq 1 60); do
    [ -z "$(kubectl get nodeclaims -l "karpenter.sh/nodepool=$PLAN-shift" -o name 2>/dev/null)" ] && break
    sleep 2
  done
  echo; echo "# The shift's on-demand nodes were replaced by spot ones, one at a time:"; claims
  echo; kubectl get events --field-selector "involvedObject.name=$PLAN" --sort-by=.lastTimestamp \
    -o custom-columns='REASON:.reason,MESSAGE:.message' 2>/dev/null | grep -E "REASON|Shift|Return|Demoted" || true
  exit 0
fi

need cargo "install Rust (rustup)"
mkdir -p "$DEMO"
log "building spotplan (release profile, shared with the tests)"
cargo build -q --release --bin spotplan
bash scripts/build-tools.sh karpenter kwok
eval "$(bash scripts/testenv.sh up)"
BIN="$CARGO_TARGET_DIR/release/spotplan"

# The data snapshots, copied at run time (a file's age is its modification time).
cp "$SHARED_DIR/data/spot-advisor/spot-advisor-data_2025-06-28.json" "$DEMO/spot-advisor-data.json"
cp "$SHARED_DIR/data/prices/ec2-linux-prices_2026-05.csv" "$DEMO/prices.csv"
if [ -f "$DEMO/controller.pid" ] && kill -0 "$(cat "$DEMO/controller.pid")" 2>/dev/null; then
  kill "$(cat "$DEMO/controller.pid")"; sleep 1
fi
"$BIN" controller --advisor-data "$DEMO/spot-advisor-data.json" --prices "$DEMO/prices.csv" \
  --listen 127.0.0.1:18080 --cache-dir "$DEMO/cache" --refresh-interval 24h >"$DEMO/controller.log" 2>&1 &
echo $! > "$DEMO/controller.pid"
for _ in $(seq 1 100); do curl -sf 127.0.0.1:18080/readyz >/dev/null && break; sleep 0.2; done
curl -sf 127.0.0.1:18080/readyz >/dev/null || die "the controller did not become ready (log: $DEMO/controller.log)"

# Real Karpenter (kwok provider) choosing among the whole catalog with the snapshot's prices;
# KWOK marks its fake nodes Ready; and the node lifecycle controller's taint removal, which the
# local kube-controller-manager runs without.
"$BIN" render --format kwok-instance-types --region us-east-1 --advisor-data "$DEMO/spot-advisor-data.json" \
  --prices "$DEMO/prices.csv" > "$DEMO/kwok-instance-types.json"
for p in karpenter kwok lifecycle; do stop_pid "$p"; done
KUBECONFIG="$KUBECONFIG" DISABLE_LEADER_ELECTION=true METRICS_PORT=18081 HEALTH_PROBE_PORT=18082 \
  INSTANCE_TYPES_FILE_PATH="$DEMO/kwok-instance-types.json" SYSTEM_NAMESPACE=kube-system \
  BATCH_IDLE_DURATION=1s BATCH_MAX_DURATION=3s "$TOOLS_BIN/karpenter-kwok" >"$DEMO/karpenter.log" 2>&1 &
echo $! > "$DEMO/karpenter.pid"
stages=(); for f in "$TOOLS_BIN"/kwok-stages/*.yaml; do stages+=(--config "$f"); done
"$TOOLS_BIN/kwok" --kubeconfig "$KUBECONFIG" --manage-all-nodes --server-address 127.0.0.1:18083 "${stages[@]}" >"$DEMO/kwok.log" 2>&1 &
echo $! > "$DEMO/kwok.pid"
( while true; do
    for n in $(kubectl get nodes -o jsonpath='{range .items[?(@.spec.taints[*].key=="node.kubernetes.io/not-ready")]}{.metadata.name}{" "}{end}' 2>/dev/null); do
      kubectl get node "$n" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -q True \
        && kubectl taint node "$n" node.kubernetes.io/not-ready- >/dev/null 2>&1
    done
    sleep 1
  done ) & echo $! > "$DEMO/lifecycle.pid"
kubectl apply -f - >/dev/null <<'NC'
apiVersion: karpenter.kwok.sh/v1alpha1
kind: KWOKNodeClass
metadata: {name: default}
NC

# The example: 64 vCPU / 256 GiB in us-east-1 that shifts to on-demand after two spot
# interruptions within ten minutes and comes back after a calm minute; a workload on it.
kubectl apply -f - <<'SP'
apiVersion: spotplan.dev/v1alpha1
kind: SpotPlan
metadata: {name: demo}
spec:
  region: us-east-1
  resources: {cpu: "64", memory: 256Gi}
  mode: balanced
  capacity:
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
  replicas: 3
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
echo "# The NodePool spotplan wrote for $PLAN:"
kubectl get nodepool "$PLAN" -o yaml
echo
echo "# Ranked plan (status.plan.instanceTypes):"
kubectl get spotplan "$PLAN" -o jsonpath='{range .status.plan.instanceTypes[*]}{.rank}{"\t"}{.name}{"\tx"}{.count}{"\t"}{.interruption}{"\t$"}{.totalSpotUsdPerHour}{"/h\n"}{end}'
for _ in $(seq 1 60); do [ "$(claims | grep -c spot)" -ge 3 ] && break; sleep 1; done
echo
echo "# NodeClaims Karpenter launched from the plan for the workload's 3 pods:"
claims
cat <<MSG

The control plane, Karpenter and the controller keep running. Try:
  scripts/demo.sh interrupt           # two spot interruptions: the shift to on-demand and back
  $(bash scripts/testenv.sh env | tr '\n' ';' | sed 's/;$//')
  kubectl apply -f examples/          # the other examples
  kubectl explain spotplan.spec.capacity.onDemandShift
  curl -s 127.0.0.1:18080/metrics | grep ^spotplan_
  scripts/demo.sh down                # stop everything
MSG
