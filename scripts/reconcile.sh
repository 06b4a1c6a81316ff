#!/usr/bin/env bash
# Reconciliation: every fill recomputed into positions and compared with the positions snapshots
# and InfluxDB (KAFKA_BROKERS, INFLUX_URL, INFLUX_DB, INFLUX_USERNAME, INFLUX_PASSWORD); exits 1 on a difference.
#   ./scripts/reconcile.sh [--from TIME] [--to TIME] [--no-influx]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/infra/toolchain.sh"
ensure_toolchain
[[ -d "$repo/node_modules" ]] || bash "$repo/scripts/bootstrap.sh"
exec node "$repo/scripts/reconcile.ts" "$@"
