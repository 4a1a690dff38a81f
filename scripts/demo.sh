#!/usr/bin/env bash
# The main job on an embedded default: a local control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, Karpenter's CRDs), the spotplan controller fed the
# data snapshots in ../shared/data, an example SpotPlan applied, and the NodePool it wrote.
#   scripts/demo.sh          # start (first run builds the control plane; cached afterwards)
#   scripts/demo.sh down     # stop the controller and the control plane
#   SPOTPLAN_DEMO_PLAN=examples/spark-emr.yaml scripts/demo.sh   # another example
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPOTPLAN_ROOT"
export SPOTPLAN_TESTENV_DIR="$SPOTPLAN_CACHE/demo/env"
DEMO="$SPOTPLAN_CACHE/demo"
PLAN_FILE="${SPOTPLAN_DEMO_PLAN:-examples/web-on-demand-base.yaml}"

if [ "${1:-}" = "down" ]; then
  [ -f "$DEMO/controller.pid" ] && kill "$(cat "$DEMO/controller.pid")" 2>/dev/null || true
  rm -f "$DEMO/controller.pid"
  bash scripts/testenv.sh down
  exit 0
fi

need cargo "install Rust (rustup)"
mkdir -p "$DEMO"
log "building spotplan (release profile, shared with the tests)"
cargo build -q --release --bin spotplan
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

name=$(awk '/^  name:/ {print $2; exit}' "$PLAN_FILE")
kubectl apply -f "$PLAN_FILE"
kubectl wait --for=condition=Ready --timeout=60s "spotplan/$name" >/dev/null
echo
kubectl get spotplans -o wide
echo
echo "# The NodePool spotplan wrote for $name:"
kubectl get nodepool "$name" -o yaml
echo
echo "# Ranked plan (status.plan.instanceTypes):"
kubectl get spotplan "$name" -o jsonpath='{range .status.plan.instanceTypes[*]}{.rank}{"\t"}{.name}{"\tx"}{.count}{"\t"}{.interruption}{"\t$"}{.totalSpotUsdPerHour}{"/h\n"}{end}'
cat <<MSG

The control plane and controller keep running. Try:
  $(bash scripts/testenv.sh env | tr '\n' ';' | sed 's/;$//')
  kubectl apply -f examples/          # the other examples
  kubectl explain spotplan.spec
  curl -s 127.0.0.1:18080/metrics | grep ^spotplan_
  scripts/demo.sh down                # stop everything
MSG
