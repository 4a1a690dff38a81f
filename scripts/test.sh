#!/usr/bin/env bash
# The whole test suite, from a fresh machine: builds the real parts it needs (cached outside the
# clone, keyed by version), checks formatting, lints, the generated files, then runs every test.
#   scripts/test.sh            # everything
#   scripts/test.sh --no-lint  # skip fmt/clippy (quicker local loop)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPOTPLAN_ROOT"
need cargo "install Rust (rustup) 1.89+"
need python3 "install Python 3.10+"
lint=1; [ "${1:-}" = "--no-lint" ] && lint=0

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
cargo test --release --workspace --no-fail-fast
phase_end

printf '\nphase timings:\n%b' "$TIMINGS" >&2
