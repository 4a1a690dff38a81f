#!/usr/bin/env bash
# The main job on an embedded default: plan a 64 vCPU / 256 GiB workload in us-east-1 from the
# embedded catalog and the data snapshots in ../shared/data.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SPOTPLAN_ROOT"
cargo build -q --profile ci --bin spotplan
"$CARGO_TARGET_DIR/ci/spotplan" recommend --cores 64 --memory 256 --region us-east-1 \
  --advisor-data "$SHARED_DIR/data/spot-advisor/spot-advisor-data_2025-06-28.json" \
  --prices "$SHARED_DIR/data/prices/ec2-linux-prices_2026-05.csv" --output table
