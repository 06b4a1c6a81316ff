#!/usr/bin/env bash
# Topics, consumer groups with their lag, and a topic's last records decoded, from the broker at
# KAFKA_BROKERS (default 127.0.0.1:9092, the one ./scripts/run-local.sh starts).
#   ./scripts/topics.sh [list]      ./scripts/topics.sh tail TOPIC [--last N] [--follow] [--partition P]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$repo/scripts/infra/toolchain.sh"
ensure_toolchain
[[ -d "$repo/node_modules" ]] || bash "$repo/scripts/bootstrap.sh"
exec node "$repo/scripts/topics.ts" "$@"
