#!/usr/bin/env bash
# Validates Kubernetes YAML offline and strictly: core types against the JSON schemas shipped in
# the PyPI package kubernetes-validate, custom resources against schemas converted (with
# kubeconform's own openapi2jsonschema.py) from the CRDs of Karpenter, kwok, spotplan,
# prometheus-operator (ServiceMonitor) and Argo CD (Application), all from their Go modules.
#   scripts/kubeconform.sh FILE...     (or - for stdin)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bash "$SPOTPLAN_ROOT/scripts/build-tools.sh" python kubeconform >/dev/null
moddir() { go mod download -json "$1" | python3 -c 'import sys,json;print(json.load(sys.stdin)["Dir"])'; }
K8S_MINOR=$(echo "$K8S_VERSION" | cut -d. -f1-2)
CORE=$(ls -d "$PYVENV"/lib/python3*/site-packages/kubernetes_validate/kubernetes-json-schema/"${K8S_MINOR}".*-local-strict | sort -V | tail -1)
[ -d "$CORE" ] || die "kubernetes-validate $KUBERNETES_VALIDATE_VERSION has no schemas for $K8S_MINOR"
# kubernetes-validate's schemas point at "/api/_definitions.json", which its own loader maps and
# kubeconform cannot: keep a copy whose references are file paths.
CORE_FIXED="$SPOTPLAN_CACHE/schemas/$(basename "$CORE")-kv$KUBERNETES_VALIDATE_VERSION"
if [ ! -f "$CORE_FIXED/.complete" ]; then
  rm -rf "$CORE_FIXED"; mkdir -p "$CORE_FIXED"
  python3 - "$CORE" "$CORE_FIXED" <<'PY'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
for name in os.listdir(src):
    if name.endswith(".json"):
        text = open(os.path.join(src, name), encoding="utf-8").read()
        text = text.replace('"/api/_definitions.json#', '"file://%s/_definitions.json#' % dst)
        open(os.path.join(dst, name), "w", encoding="utf-8").write(text)
PY
  touch "$CORE_FIXED/.complete"
fi
CORE="$CORE_FIXED"
CRDS_DIR="$SPOTPLAN_CACHE/schemas/karpenter-$KARPENTER_VERSION-po-$PROMETHEUS_OPERATOR_VERSION-argocd-$ARGOCD_VERSION"
if [ ! -f "$CRDS_DIR/.complete" ]; then
  rm -rf "$CRDS_DIR"; mkdir -p "$CRDS_DIR"
  kdir=$(moddir "sigs.k8s.io/karpenter@$KARPENTER_VERSION")
  podir=$(moddir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
  argodir=$(moddir "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION")
  kcdir=$(moddir "github.com/yannh/kubeconform@$KUBECONFORM_VERSION")
  ( cd "$CRDS_DIR" && FILENAME_FORMAT='{fullgroup}-{kind}-{version}' "$PYVENV/bin/python" "$kcdir/scripts/openapi2jsonschema.py" \
      "$kdir/pkg/apis/crds/karpenter.sh_nodepools.yaml" "$kdir/pkg/apis/crds/karpenter.sh_nodeclaims.yaml" \
      "$kdir/kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml" \
      "$podir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
      "$argodir/manifests/crds/application-crd.yaml" >/dev/null )
  touch "$CRDS_DIR/.complete"
fi
# Our own CRD changes with the code: convert it on every run.
OURS=$(mktemp -d); trap 'rm -rf "$OURS"' EXIT
( cd "$OURS" && FILENAME_FORMAT='{fullgroup}-{kind}-{version}' "$PYVENV/bin/python" \
    "$(moddir "github.com/yannh/kubeconform@$KUBECONFORM_VERSION")/scripts/openapi2jsonschema.py" \
    "$SPOTPLAN_ROOT/crds/spotplan.dev_spotplans.yaml" >/dev/null )
"$TOOLS_BIN/kubeconform" -strict -summary -output text \
  -schema-location "$CORE/{{.ResourceKind}}{{.KindSuffix}}.json" \
  -schema-location "$CRDS_DIR/{{.Group}}-{{.ResourceKind}}-{{.ResourceAPIVersion}}.json" \
  -schema-location "$OURS/{{.Group}}-{{.ResourceKind}}-{{.ResourceAPIVersion}}.json" \
  "$@"
