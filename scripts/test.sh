#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs Node 24, pnpm and the packages, type-checks,
# then runs the unit and integration tests. The integration tests use KAFKA_BROKERS / INFLUX_URL when
# set, else containers when a Docker engine answers, else a real Kafka broker and InfluxDB that
# scripts/infra starts (and stops) on this machine. Extra arguments go to vitest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/bootstrap.sh"
. "$repo/scripts/infra/toolchain.sh"
ensure_toolchain
cd "$repo"
echo "[test] type-checking" >&2
pnpm run --silent typecheck
echo "[test] unit and integration tests" >&2
results="$(mktemp -d)/vitest.json"
status=0
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json="$results" "$@" || status=$?
if [ -f "$results" ]; then
  node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);' "$results"
fi
exit "$status"
