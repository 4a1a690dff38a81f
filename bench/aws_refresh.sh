#!/usr/bin/env bash
# One refresh of live AWS data for us-east-1 against moto (EC2) and a Price List stand-in
# (bench/pricing_stub.py): the API calls and pages it makes and its wall time, median of 5 runs
# on an empty cache. Prints figures; fails loudly if a part cannot start.
#   bench/aws_refresh.sh
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
cd "$SPOTPLAN_ROOT"
bash scripts/build-tools.sh python >/dev/null
cargo build -q --release --bin spotplan
WORK=$(mktemp -d)
cleanup() { for p in ${MOTO_PID:-} ${STUB_PID:-}; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
MOTO_PORT=$(free_port)
"$PYVENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 & MOTO_PID=$!
python3 bench/pricing_stub.py "$SHARED_DIR/data/on-demand-prices/karpenter_ondemand_linux_2026-07-20.json" "$WORK/stub.port" & STUB_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/stub.port" ] && curl -s "127.0.0.1:$MOTO_PORT" >/dev/null && break; sleep 0.3; done
curl -s "127.0.0.1:$MOTO_PORT" >/dev/null || die "moto did not start: $(tail -5 "$WORK/moto.log")"
export AWS_ENDPOINT_URL_EC2="http://127.0.0.1:$MOTO_PORT" AWS_ENDPOINT_URL_PRICING="http://127.0.0.1:$(cat "$WORK/stub.port")"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
BIN="$CARGO_TARGET_DIR/release/spotplan"
ADVISOR="$SHARED_DIR/data/spot-advisor/spot-advisor-data_2025-06-28.json"
python3 - "$BIN" "$ADVISOR" "$WORK" <<'PY'
import statistics, subprocess, sys, time
bin, advisor, work = sys.argv[1:4]
times = []
for i in range(5):
    t = time.perf_counter()
    out = subprocess.run([bin, "data", "show", "--aws", "--region", "us-east-1", "--advisor-data", advisor,
                          "--cache-dir", f"{work}/cache-{i}"], capture_output=True, text=True, check=True).stdout
    times.append(time.perf_counter() - t)
for line in out.splitlines():
    if line.startswith(("spot-price-history", "price-list", "instance-type", "aws api calls")):
        print(line)
print(f"one live refresh of us-east-1 against moto: median {statistics.median(times):.2f} s of 5 runs on an empty cache")
PY
