#!/usr/bin/env bash
# The whole pipeline without Docker: installs what is missing, starts a real Kafka broker and
# InfluxDB on this machine (unless KAFKA_BROKERS / INFLUX_URL point elsewhere), the services and a
# live tick and order feed, and shows a status line per service until Ctrl-C, which stops everything it started.
#   ./scripts/run-local.sh [--tick-rate 2000] [--order-rate 200]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/bootstrap.sh"
. "$repo/scripts/infra/toolchain.sh"
ensure_toolchain
. "$repo/scripts/infra/local.sh"
use_local_infra
cd "$repo"
node scripts/run-local.ts "$@" || true
