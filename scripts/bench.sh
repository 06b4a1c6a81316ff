#!/usr/bin/env bash
# Benchmarks on this machine with a local broker and InfluxDB (started unless KAFKA_BROKERS /
# INFLUX_URL are set) and prints a table.   ./scripts/bench.sh ticks [--rate 20000] [--seconds 60]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
which="${1:-ticks}"
shift || true
bash "$repo/scripts/bootstrap.sh"
. "$repo/scripts/infra/toolchain.sh"
ensure_toolchain
. "$repo/scripts/infra/local.sh"
use_local_infra
cd "$repo"
node "scripts/bench-$which.ts" "$@"
