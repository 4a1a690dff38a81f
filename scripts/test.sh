#!/usr/bin/env bash
# The whole test suite, from a fresh machine: builds the real parts it needs (cached outside the
# clone, keyed by version), checks formatting, lints, the generated files, then runs every test.
#   scripts/test.sh                    # everything
#   scripts/test.sh --no-lint          # skip fmt/clippy (quicker local loop)
#   scripts/test.sh --partial helm,lua5.1
#       a partial run: tests that need a part named here (control-plane, venv, helm,
#       kubeconform, hadolint, lua5.1, promtool, fleet-harness, argocd-rig, or all) end early
#       when it is missing, instead of failing; the closing summary lists each one as skipped.
#       Same as SPOTPLAN_PARTIAL=...
# Without --partial, a test whose part is missing fails: a pass always means it ran.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPOTPLAN_ROOT"
need cargo "install Rust (rustup) 1.89+"
need python3 "install Python 3.10+"
lint=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-lint) lint=0; shift ;;
    --partial) [ $# -ge 2 ] || die "--partial needs a list of parts (control-plane,venv,helm,kubeconform,hadolint,lua5.1,promtool,fleet-harness,argocd-rig or all)"
               export SPOTPLAN_PARTIAL="$2"; shift 2 ;;
    *) die "unknown argument $1 (use --no-lint, --partial PARTS)" ;;
  esac
done

phase() { PHASE_NAME="$1"; PHASE_START=$(date +%s); log "phase: $1"; }
phase_end() { local d=$(( $(date +%s) - PHASE_START )); log "phase: $PHASE_NAME took ${d}s"; TIMINGS="${TIMINGS:-}$(printf '%-28s %5ss' "$PHASE_NAME" "$d")\n"; }

phase "tools (go, python)"
bash scripts/build-tools.sh all > "$SPOTPLAN_CACHE/build-tools.log" 2>&1 || { tail -40 "$SPOTPLAN_CACHE/build-tools.log"; die "building the test tools failed (log: $SPOTPLAN_CACHE/build-tools.log)"; }
phase_end

export SPOTPLAN_PYTHON="$PYVENV/bin/python"
export SPOTPLAN_SHARED="$SHARED_DIR"
export SPOTPLAN_TOOLS="$TOOLS_BIN"
export PATH="$TOOLS_BIN:$PYVENV/bin:$PATH"

phase "generated catalog"
tmp=$(mktemp); "$SPOTPLAN_PYTHON" tools/gen_catalog.py --out "$tmp" 2>/dev/null
cmp -s "$tmp" crates/spotplan-core/catalog/ec2-catalog.json || { rm -f "$tmp"; die "crates/spotplan-core/catalog/ec2-catalog.json differs from what tools/gen_catalog.py makes from moto $MOTO_VERSION: regenerate it"; }
rm -f "$tmp"
phase_end

if [ "$lint" = 1 ]; then
  phase "fmt + clippy"
  cargo fmt --all -- --check
  cargo clippy -q --release --workspace --all-targets -- -D warnings
  phase_end
fi

phase "cargo test"
# The lanes' outputs and the skip log live in a directory of this run's own under the cache, not
# in /tmp: once, a file there vanished mid-run and the summary counted one lane only.
run_dir=$(mktemp -d "$SPOTPLAN_CACHE/test-run.XXXXXX")
SPOTPLAN_SKIP_LOG="$run_dir/skipped"; : > "$SPOTPLAN_SKIP_LOG"; export SPOTPLAN_SKIP_LOG
out="$run_dir/main-lane.log"; out2="$run_dir/rig-lane.log"
set +e
cargo test --release --workspace --no-run 2>&1 | tail -3
# Two lanes once everything is built: the rig tests spend most of their time waiting on the
# control plane, Karpenter and Argo CD, so the three longest test files run beside the rest.
# Each lane is a plain `cargo test`; every test of the workspace is in exactly one of them.
long=(operator quickstart karpenter_e2e)
for d in crates/*/tests; do [ -e "$d" ] && die "$d: add its tests to a lane below"; done
rest=()
for f in tests/*.rs; do
  t=$(basename "$f" .rs)
  [[ " ${long[*]} " == *" $t "* ]] || rest+=(--test "$t")
done
cargo test --release -p spotplan --no-fail-fast "${long[@]/#/--test=}" > "$out2" 2>&1 &
lane=$!
{ cargo test --release --workspace --no-fail-fast --lib --bins "${rest[@]}"; r1=$?
  cargo test --release --workspace --no-fail-fast --doc; r2=$?
  exit $(( r1 | r2 )); } 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
wait "$lane"; rc2=$?
cat "$out2"
for f in "$out" "$out2" "$SPOTPLAN_SKIP_LOG"; do
  [ -f "$f" ] || die "$f is gone: this run's summary cannot be counted"
done
cat "$out2" >> "$out"
[ "$rc" = 0 ] && rc=$rc2
set -e
phase_end

printf '\nphase timings:\n%b' "$TIMINGS" >&2

# What ran, what failed and what was skipped: libtest reports a skipped test as passed, so the
# skips (tests that ended early in a partial run) come from their own log.
read -r passed failed ignored < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) {
    if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) g += $i } }
  END { print p+0, f+0, g+0 }' "$out")
skipped=$(sort -u "$SPOTPLAN_SKIP_LOG" | grep -c . || true)
{
  echo
  echo "summary: $(( passed - skipped )) tests ran and passed, $failed failed, $skipped skipped (a part was missing), $ignored ignored"
  if [ -n "${SPOTPLAN_PARTIAL:-}" ]; then
    echo "summary: this was a PARTIAL run (SPOTPLAN_PARTIAL=$SPOTPLAN_PARTIAL): tests needing those parts did not run when the part was missing"
  fi
  sort -u "$SPOTPLAN_SKIP_LOG" | awk -F '\t' '{ printf "  skipped: %s (no %s): %s\n", $1, $2, $3 }'
} >&2
rm -rf "$run_dir"
[ "$rc" = 0 ] || die "cargo test failed (exit $rc): see the failures above"
