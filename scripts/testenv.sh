#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for tests and the demo: etcd, kube-apiserver
# (RBAC, audit log), kube-controller-manager (garbage collection, service accounts) and
# kube-scheduler, with Karpenter's own CRDs (sha256-checked against its module) and SpotPlan's.
#
#   scripts/testenv.sh up                 # build once (cached), start, print export lines
#   scripts/testenv.sh down               # stop everything `up` started
#   scripts/testenv.sh env                # print the export lines again
#   scripts/testenv.sh restart-apiserver  # kill kube-apiserver and start it again (same flags)
#   scripts/testenv.sh status
# SPOTPLAN_TESTENV_DIR chooses the state directory (default: one per user, in the cache), so
# several environments can run side by side.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
STATE="${SPOTPLAN_TESTENV_DIR:-$SPOTPLAN_CACHE/testenv/default}"
PKI="$STATE/pki"
KUBECONFIG_FILE="$STATE/admin.kubeconfig"

print_env() {
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  echo "export PATH=$TOOLS_BIN:\$PATH"
  echo "export SPOTPLAN_TESTENV_DIR=$STATE"
  # kubectl caches discovery per host:port; ports are reused between environments.
  echo "export KUBECACHEDIR=$STATE/kube-cache"
}

gen_pki() {
  [ -f "$PKI/ca.crt" ] && return
  mkdir -p "$PKI"
  ( cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=spotplan-testenv-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc\n' > san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # Static tokens: the admin, the control-plane components, and two controller identities that
    # tests bind to the operator's ClusterRole (config/rbac) to prove least privilege.
    {
      echo "$(openssl rand -hex 16),admin,admin,system:masters"
      echo "$(openssl rand -hex 16),system:kube-controller-manager,kcm,system:masters"
      echo "$(openssl rand -hex 16),system:kube-scheduler,scheduler,system:masters"
      echo "$(openssl rand -hex 16),spotplan-a,spotplan-a,spotplan:controllers"
      echo "$(openssl rand -hex 16),spotplan-b,spotplan-b,spotplan:controllers"
    } > tokens.csv )
}

token_of() { awk -F, -v u="$1" '$2==u {print $1}' "$PKI/tokens.csv"; }

kubeconfig_for() { # user file
  cat > "$2" <<KC
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster: {server: "https://127.0.0.1:$(cat "$STATE/apiserver.port")", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {token: "$(token_of "$1")"}
contexts:
- name: testenv
  context: {cluster: testenv, user: $1}
current-context: testenv
KC
}

start_apiserver() {
  local ap; ap=$(cat "$STATE/apiserver.port")
  LOG_FROM=1; [ -f "$STATE/kube-apiserver.log" ] && LOG_FROM=$(( $(wc -l < "$STATE/kube-apiserver.log") + 1 ))
  "$TOOLS_BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$(cat "$STATE/etcd.port")" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$ap" \
    --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=Node,RBAC \
    --disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none --allow-privileged=true \
    --audit-policy-file="$STATE/audit-policy.yaml" --audit-log-path="$STATE/audit.log" \
    --audit-log-maxsize=0 --audit-log-format=json \
    >>"$STATE/kube-apiserver.log" 2>&1 &
  echo $! > "$STATE/kube-apiserver.pid"
  # Our CA and token: another environment's apiserver on this port cannot answer this.
  until_ready kube-apiserver curl -sf -m 2 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(token_of admin)" "https://127.0.0.1:$ap/readyz"
}

# Starts etcd and kube-apiserver on free ports. A port is picked by binding and closing a
# socket, so an environment starting beside this one can take it before our server binds it:
# then our server exits with "address already in use", and we pick again.
start_servers() {
  local name="spotplan-$$-$RANDOM"
  for attempt in 1 2 3 4 5 6 7 8; do
    pick_port "$attempt" > "$STATE/etcd.port"; free_port > "$STATE/etcd-peer.port"
    start_etcd "$name" && break
    [ "$attempt" = 8 ] && die "etcd could not bind free ports in 8 attempts (log: $STATE/etcd.log)"
    log "etcd's port was taken by another process; picking new ports (attempt $attempt)"
  done
  for attempt in 1 2 3 4 5 6 7 8; do
    pick_port "$attempt" > "$STATE/apiserver.port"
    start_apiserver && break
    [ "$attempt" = 8 ] && die "kube-apiserver could not bind a free port in 8 attempts (log: $STATE/kube-apiserver.log)"
    log "kube-apiserver's port was taken by another process; picking a new one (attempt $attempt)"
  done
}

# A free port; on the first attempt, SPOTPLAN_TESTENV_TAKEN_PORT when set (the rig's test of
# this retry hands it a port it holds).
pick_port() {
  if [ "$1" = 1 ] && [ -n "${SPOTPLAN_TESTENV_TAKEN_PORT:-}" ]; then echo "$SPOTPLAN_TESTENV_TAKEN_PORT"; else free_port; fi
}

# Returns 1 when etcd exited because its port was taken (the caller picks again).
start_etcd() {
  local name=$1 ep pp; ep=$(cat "$STATE/etcd.port"); pp=$(cat "$STATE/etcd-peer.port")
  rm -rf "$STATE/etcd-data"
  LOG_FROM=1
  "$TOOLS_BIN/etcd" --name="$name" --data-dir="$STATE/etcd-data" --listen-client-urls="http://127.0.0.1:$ep" \
    --advertise-client-urls="http://127.0.0.1:$ep" --listen-peer-urls="http://127.0.0.1:$pp" \
    --initial-advertise-peer-urls="http://127.0.0.1:$pp" --initial-cluster="$name=http://127.0.0.1:$pp" \
    --unsafe-no-fsync=true --listen-metrics-urls="http://127.0.0.1:0" >"$STATE/etcd.log" 2>&1 &
  echo $! > "$STATE/etcd.pid"
  # Ready when the etcd on that port is ours (its member name), not another environment's.
  until_ready etcd etcd_is "$ep" "$name"
}

etcd_is() { curl -sf -m 2 -X POST "http://127.0.0.1:$1/v3/cluster/member/list" -d '{}' | grep -q "\"name\":\"$2\""; }

# Waits until the command succeeds while our process runs. Returns 1 when the process exited
# because its address was in use (said in its log from line $LOG_FROM on); dies on any other
# exit or after 60 s.
until_ready() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 300); do
    if ! pid_alive "$name"; then
      tail -n "+$LOG_FROM" "$STATE/$name.log" | grep -q "address already in use" && return 1
      die "$name exited (log: $STATE/$name.log): $(tail -3 "$STATE/$name.log")"
    fi
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$name did not become ready in 60s (logs: $STATE/$name.log)"
}

up() {
  if pid_alive kube-apiserver && pid_alive etcd; then print_env; return; fi
  down >/dev/null 2>&1 || true
  for t in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$TOOLS_BIN/$t" ] && continue
    log "$t is not built yet: building the test tools (first run only; see scripts/build-tools.sh)"
    bash "$SPOTPLAN_ROOT/scripts/build-tools.sh" kube etcd >&2 || die "building $t failed: see the output above"
    break
  done
  need openssl "install openssl (Debian: apt-get install openssl)"
  need curl "install curl"
  mkdir -p "$STATE"; gen_pki
  cat > "$STATE/audit-policy.yaml" <<'AP'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  users: ["system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"]
- level: None
  nonResourceURLs: ["/readyz*", "/livez*", "/healthz*", "/version", "/openapi*", "/api", "/apis*"]
- level: Metadata
AP
  : > "$STATE/audit.log"
  start_servers
  kubeconfig_for admin "$KUBECONFIG_FILE"
  kubeconfig_for system:kube-controller-manager "$STATE/kcm.kubeconfig"
  kubeconfig_for system:kube-scheduler "$STATE/scheduler.kubeconfig"
  kubeconfig_for spotplan-a "$STATE/spotplan-a.kubeconfig"
  kubeconfig_for spotplan-b "$STATE/spotplan-b.kubeconfig"
  "$TOOLS_BIN/kube-controller-manager" --kubeconfig="$STATE/kcm.kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=0 --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --controllers='*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
    >"$STATE/kube-controller-manager.log" 2>&1 &
  echo $! > "$STATE/kube-controller-manager.pid"
  "$TOOLS_BIN/kube-scheduler" --kubeconfig="$STATE/scheduler.kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=0 >"$STATE/kube-scheduler.log" 2>&1 &
  echo $! > "$STATE/kube-scheduler.pid"

  # Karpenter's own CRDs, byte for byte from its module, checked against the pinned hashes.
  local kdir; kdir=$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/karpenter@$KARPENTER_VERSION" | python3 -c 'import sys,json;print(json.load(sys.stdin)["Dir"])') \
    || die "cannot download sigs.k8s.io/karpenter@$KARPENTER_VERSION from the Go module proxy"
  ( cd "$kdir" && sha256sum -c --quiet "$SPOTPLAN_ROOT/scripts/karpenter-crds.sha256" ) \
    || die "Karpenter's CRD files in $kdir do not match scripts/karpenter-crds.sha256"
  local k="$TOOLS_BIN/kubectl --kubeconfig=$KUBECONFIG_FILE --cache-dir=$STATE/kube-cache"
  $k apply --server-side -f "$kdir/pkg/apis/crds/karpenter.sh_nodepools.yaml" -f "$kdir/pkg/apis/crds/karpenter.sh_nodeclaims.yaml" \
    -f "$kdir/pkg/apis/crds/karpenter.sh_nodeoverlays.yaml" -f "$kdir/kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml" >/dev/null
  $k apply --server-side -f "$SPOTPLAN_ROOT/crds/spotplan.dev_spotplans.yaml" >/dev/null
  $k wait --for=condition=Established --timeout=60s crd/nodepools.karpenter.sh crd/spotplans.spotplan.dev >/dev/null
  echo "$kdir" > "$STATE/karpenter.dir"
  log "control plane up at https://127.0.0.1:$(cat "$STATE/apiserver.port") (state: $STATE)"
  print_env
}

down() {
  for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if pid_alive "$c"; then kill "$(cat "$STATE/$c.pid")" 2>/dev/null || true; fi
  done
  for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if [ -f "$STATE/$c.pid" ]; then
      local p; p=$(cat "$STATE/$c.pid")
      for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
      rm -f "$STATE/$c.pid"
    fi
  done
  log "control plane down (state: $STATE)"
}

restart_apiserver() {
  pid_alive kube-apiserver || die "kube-apiserver is not running (scripts/testenv.sh up)"
  kill "$(cat "$STATE/kube-apiserver.pid")"
  for _ in $(seq 1 100); do pid_alive kube-apiserver || break; sleep 0.1; done
  sleep "${RESTART_PAUSE:-0}"
  start_apiserver || die "kube-apiserver could not bind its port $(cat "$STATE/apiserver.port") again after the restart"
  log "kube-apiserver restarted"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  restart-apiserver) restart_apiserver ;;
  status) for c in etcd kube-apiserver kube-controller-manager kube-scheduler; do pid_alive "$c" && echo "$c: running" || echo "$c: stopped"; done ;;
  *) echo "usage: $0 up|down|env|status|restart-apiserver" >&2; exit 2 ;;
esac
