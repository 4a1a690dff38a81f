#!/usr/bin/env bash
# Argo CD on the test rig's control plane (scripts/testenv.sh): its own application controller and
# repo server (pinned ARGOCD_VERSION, built by scripts/build-tools.sh argocd), Redis from Debian's
# packages, and a Git server (git daemon) on loopback for a GitOps repository. No API server, UI
# or Dex: tests and users read Argo CD's view from the Application's status.
#
#   eval "$(scripts/testenv.sh up)"   # first: the control plane
#   scripts/argocd.sh up              # Argo CD in namespace argocd; prints export lines
#   scripts/argocd.sh down
#
# Argo CD runs with its own RBAC (its ServiceAccount, ClusterRole and Role from its module's
# manifests), as a token of that ServiceAccount; "in-cluster" (https://kubernetes.default.svc)
# is the rig's API server. Repositories go under $ARGOCD_GIT_ROOT and are served as
# git://127.0.0.1:$ARGOCD_GIT_PORT/<name>.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ENV_STATE="${SPOTPLAN_TESTENV_DIR:-$SPOTPLAN_CACHE/testenv/default}"
STATE="$ENV_STATE/argocd"
NS=argocd

print_env() {
  echo "export ARGOCD_NAMESPACE=$NS"
  echo "export ARGOCD_GIT_ROOT=$STATE/git"
  echo "export ARGOCD_GIT_PORT=$(cat "$STATE/git.port")"
  echo "export ARGOCD_CONTROLLER_METRICS=http://127.0.0.1:$(cat "$STATE/controller-metrics.port")/metrics"
  echo "export ARGOCD_STATE=$STATE"
}

# Starts a background process NAME (log and pid in $STATE) and waits until CHECK succeeds.
start() { # name, check, command...
  local name=$1 check=$2; shift 2
  "$@" >"$STATE/$name.log" 2>&1 &
  echo $! > "$STATE/$name.pid"
  for _ in $(seq 1 300); do
    pid_alive "$name" || die "$name exited (log: $STATE/$name.log): $(tail -5 "$STATE/$name.log")"
    bash -c "$check" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$name did not become ready in 60s (log: $STATE/$name.log)"
}

up() {
  if pid_alive application-controller && pid_alive repo-server; then print_env; return; fi
  down >/dev/null 2>&1 || true
  [ -x "$TOOLS_BIN/argocd-rig" ] || die "Argo CD is not built: scripts/build-tools.sh argocd"
  need redis-server "install Redis (Debian: apt-get install redis-server; scripts/build-tools.sh apt)"
  need git "install git"
  [ -f "$ENV_STATE/admin.kubeconfig" ] || die "no control plane in $ENV_STATE: run scripts/testenv.sh up first"
  mkdir -p "$STATE/git" "$STATE/tmp"
  local k="$TOOLS_BIN/kubectl --kubeconfig=$ENV_STATE/admin.kubeconfig --cache-dir=$ENV_STATE/kube-cache"
  local m; m=$(bash "$SPOTPLAN_ROOT/scripts/build-tools.sh" moddir "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION") \
    || die "cannot download github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION"

  # Argo CD's CRDs, its own RBAC and its configuration, from its module's manifests; argocd-cm is
  # the shipped example's (the SpotPlan health check).
  $k apply --server-side -f "$m/manifests/crds/application-crd.yaml" -f "$m/manifests/crds/appproject-crd.yaml" >/dev/null
  $k create namespace "$NS" --dry-run=client -o yaml | $k apply -f - >/dev/null
  $k apply -n "$NS" -f "$m/manifests/base/application-controller-roles/argocd-application-controller-sa.yaml" \
    -f "$m/manifests/base/application-controller-roles/argocd-application-controller-role.yaml" \
    -f "$m/manifests/base/application-controller-roles/argocd-application-controller-rolebinding.yaml" \
    -f "$m/manifests/cluster-rbac/application-controller/argocd-application-controller-clusterrole.yaml" \
    -f "$m/manifests/cluster-rbac/application-controller/argocd-application-controller-clusterrolebinding.yaml" \
    -f "$m/manifests/base/config/argocd-secret.yaml" -f "$m/manifests/base/config/argocd-cmd-params-cm.yaml" \
    -f "$m/manifests/base/config/argocd-rbac-cm.yaml" -f "$SPOTPLAN_ROOT/examples/argocd/argocd-cm.yaml" >/dev/null
  # The key Argo CD's API server would generate on its first start.
  $k patch secret argocd-secret -n "$NS" --type merge \
    -p "{\"stringData\":{\"server.secretkey\":\"$(openssl rand -hex 32)\"}}" >/dev/null
  $k wait --for=condition=Established --timeout=60s crd/applications.argoproj.io crd/appprojects.argoproj.io >/dev/null
  # The default project, as Argo CD's API server would create it.
  $k apply -f - >/dev/null <<'YAML'
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: argocd}
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
YAML
  local token; token=$($k create token argocd-application-controller -n "$NS" --duration 24h)
  sed -e "s/^\(\s*token:\).*/\1 \"$token\"/" -e "s/user: {token: .*}/user: {token: \"$token\"}/" \
    "$ENV_STATE/admin.kubeconfig" > "$STATE/controller.kubeconfig"
  grep -q "$token" "$STATE/controller.kubeconfig" || die "could not write the controller's kubeconfig"

  local redis git repo repo_metrics metrics
  redis=$(free_port); git=$(free_port); repo=$(free_port); repo_metrics=$(free_port); metrics=$(free_port)
  echo "$git" > "$STATE/git.port"; echo "$metrics" > "$STATE/controller-metrics.port"
  start redis "redis-cli -p $redis ping | grep -q PONG" \
    redis-server --port "$redis" --bind 127.0.0.1 --save "" --appendonly no --dir "$STATE"
  start git-daemon "exec 3<>/dev/tcp/127.0.0.1/$git" \
    git daemon --reuseaddr --export-all --base-path="$STATE/git" --listen=127.0.0.1 --port="$git" "$STATE/git"
  # The repo server renders Helm charts with the pinned helm, and keeps its clones in $STATE/tmp.
  start repo-server "exec 3<>/dev/tcp/127.0.0.1/$repo" env ARGOCD_BINARY_NAME=argocd-repo-server \
    PATH="$TOOLS_BIN:$PATH" TMPDIR="$STATE/tmp" ARGOCD_GPG_ENABLED=false HOME="$STATE" \
    "$TOOLS_BIN/argocd-rig" --port "$repo" --metrics-port "$repo_metrics" --redis "127.0.0.1:$redis" \
    --disable-tls --loglevel info
  # ARGOCD_FAKE_IN_CLUSTER: "in-cluster" is the cluster of $KUBECONFIG, not a pod's service account.
  start application-controller "curl -sf http://127.0.0.1:$metrics/metrics" env ARGOCD_BINARY_NAME=argocd-application-controller \
    KUBECONFIG="$STATE/controller.kubeconfig" ARGOCD_FAKE_IN_CLUSTER=true HOME="$STATE" TMPDIR="$STATE/tmp" \
    "$TOOLS_BIN/argocd-rig" --namespace "$NS" --repo-server "127.0.0.1:$repo" --repo-server-plaintext \
    --redis "127.0.0.1:$redis" --metrics-port "$metrics" --app-resync 30 --app-resync-jitter 0 --self-heal-timeout-seconds 1 --persist-resource-health \
    --loglevel info
  log "Argo CD $ARGOCD_VERSION up in namespace $NS; Git at git://127.0.0.1:$git/ (state: $STATE)"
  print_env
}

down() {
  for p in application-controller repo-server git-daemon redis; do
    if pid_alive "$p"; then kill "$(cat "$STATE/$p.pid")" 2>/dev/null || true; fi
  done
  for p in application-controller repo-server git-daemon redis; do
    for _ in $(seq 1 50); do pid_alive "$p" || break; sleep 0.1; done
    if pid_alive "$p"; then kill -9 "$(cat "$STATE/$p.pid")" 2>/dev/null || true; fi
    rm -f "$STATE/$p.pid"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  *) die "usage: scripts/argocd.sh up|down|env" ;;
esac
