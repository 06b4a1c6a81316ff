#!/usr/bin/env bash
# Debian's chromium for the page tests (driven by playwright-core; no browser download): installs
# it when missing and prints its path.   scripts/infra/chromium.sh
set -euo pipefail
log() { echo "[chromium] $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source-path=SCRIPTDIR source=process.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/process.sh"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
  apt_install chromium
  [[ -x "$CHROMIUM" ]] || die "chromium is not at $CHROMIUM after installing it"
fi
echo "$CHROMIUM"
