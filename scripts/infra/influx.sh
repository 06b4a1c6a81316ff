#!/usr/bin/env bash
# A real InfluxDB 1.x for local development and integration tests, run as a private instance with
# its own config and data dir, with authentication on and its users made as docker-compose's
# influxdb image makes them: an admin (ALL PRIVILEGES) and a database user with GRANT ALL ON the
# database only.
#
#   scripts/infra/influx.sh start        build or install influxd if missing, start it, create the
#                                        database and users on a fresh data dir, wait for /ping
#   scripts/infra/influx.sh stop         stop it (pid file only), remove its data dir
#   scripts/infra/influx.sh status       exit 0 if it is running
#   scripts/infra/influx.sh credentials  print the path of its credentials file (KEY='value' lines)
#   scripts/infra/influx.sh build        build (once) and print the path of influxd $INFLUXDB_VERSION
#   scripts/infra/influx.sh logs [ARGS]  tail its log (ARGS go to tail, default -n 200)
#
# influxd is the version docker-compose runs (INFLUXDB_VERSION in versions.sh), built once from
# its Go module with Go and Rust (its Flux engine) and cached in ~/.cache/tradeflow; when that
# build cannot be done, Debian's influxdb package (1.6.x) is used and the reason is logged.
#
# Environment (defaults):
#   INFLUX_PORT=8086        HTTP API (bound to 127.0.0.1)
#   INFLUX_RPC_PORT=8088    backup/restore RPC bind address (127.0.0.1)
#   INFLUX_DATA_DIR=${TMPDIR:-/tmp}/tradeflow-influx-$INFLUX_PORT
#   INFLUX_START_TIMEOUT=60 (seconds)
#   INFLUX_KEEP_DATA=0 (1: stop keeps the data dir and start reuses it; otherwise every start
#                       begins from an empty data dir)
#   INFLUX_DB=tradeflow  INFLUX_ADMIN_USER=admin  INFLUX_USERNAME=tradeflow
#   INFLUX_ADMIN_PASSWORD, INFLUX_PASSWORD: random when unset; all of them are written to
#                       $INFLUX_DATA_DIR/credentials.env (mode 600) on a fresh data dir
#   INFLUXD=path        use this influxd instead of building or installing one
set -euo pipefail

INFLUX_PORT="${INFLUX_PORT:-8086}"
INFLUX_RPC_PORT="${INFLUX_RPC_PORT:-8088}"
INFLUX_DATA_DIR="${INFLUX_DATA_DIR:-${TMPDIR:-/tmp}/tradeflow-influx-$INFLUX_PORT}"
INFLUX_START_TIMEOUT="${INFLUX_START_TIMEOUT:-60}"
INFLUX_KEEP_DATA="${INFLUX_KEEP_DATA:-0}"
INFLUX_DB="${INFLUX_DB:-tradeflow}"
INFLUX_ADMIN_USER="${INFLUX_ADMIN_USER:-admin}"
INFLUX_USERNAME="${INFLUX_USERNAME:-tradeflow}"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.sh
. "$SCRIPT_DIR/versions.sh"
BUILD_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tradeflow/influxdb-$INFLUXDB_VERSION"
BUILT_INFLUXD="$BUILD_DIR/bin/influxd"

PID_FILE="$INFLUX_DATA_DIR/influxd.pid"
LOG_FILE="$INFLUX_DATA_DIR/influxd.log"
CONF_FILE="$INFLUX_DATA_DIR/influxdb.conf"
OWNER_MARKER="$INFLUX_DATA_DIR/.tradeflow-influx"
CREDENTIALS_FILE="$INFLUX_DATA_DIR/credentials.env"
URL="http://127.0.0.1:$INFLUX_PORT"

# Never fails: after a terminal closed, stderr is gone and stopping must go on.
log() { echo "[influx] $*" 1>&2 2>/dev/null || true; }
die() { log "$*"; exit 1; }
# shellcheck source-path=SCRIPTDIR source=process.sh
. "$SCRIPT_DIR/process.sh"

# --- process helpers ---------------------------------------------------------

# Prints the pid from the pid file if that process is alive and is our influxd.
running_pid() { pid_matching "$PID_FILE" "-config $CONF_FILE"; }

ping_code() {
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL/ping" 2>/dev/null || true
}

remove_data_dir() { remove_owned_dir "$INFLUX_DATA_DIR" "$INFLUX_KEEP_DATA" "$OWNER_MARKER" INFLUX_KEEP_DATA; }

# --- install -----------------------------------------------------------------

# If the package's own service got started anyway (e.g. installed earlier without a
# policy-rc.d), stop it through its init script, which stops only its own pid file.
stop_package_service() {
  local pidfile=/var/run/influxdb/influxd.pid pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && [[ -x /etc/init.d/influxdb ]]; then
    log "stopping the influxdb package's own service (pid $pid)"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" /etc/init.d/influxdb stop >&2 || true
  fi
}

# Builds influxd and influx $INFLUXDB_VERSION from the Go module into $BUILD_DIR (once; several
# minutes). Flux, built into influxd, is Rust: the influxdata/pkg-config wrapper that InfluxDB's
# go.mod names builds it with cargo. Flux pins a Rust toolchain that only rustup's download site
# has, so any installed stable toolchain is used, with lints capped at warnings (newer compilers
# add lints that Flux's deny(warnings) would turn into errors). Prints why when it cannot.
build_influxd() {
  [[ -x "$BUILT_INFLUXD" && -x "$BUILD_DIR/bin/influx" ]] && return 0
  command -v go >/dev/null || { echo "go is not installed"; return 1; }
  command -v cargo >/dev/null || { echo "cargo (Rust) is not installed: InfluxDB's Flux engine is built with it"; return 1; }
  mkdir -p "$BUILD_DIR"
  exec 8>"$BUILD_DIR/.lock"
  flock 8
  if [[ ! -x "$BUILT_INFLUXD" || ! -x "$BUILD_DIR/bin/influx" ]]; then
    local work="$BUILD_DIR/build" build_log="$BUILD_DIR/build.log" source pkgconfig_version
    rm -rf -- "$work"
    mkdir -p "$work/bin"
    log "building InfluxDB $INFLUXDB_VERSION from its Go module, once (several minutes; log: $build_log)"
    printf '#!/bin/sh\nexec "$@" --cap-lints=warn\n' >"$work/rustc-cap-lints"
    chmod +x "$work/rustc-cap-lints"
    if ! {
      source="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/influxdata/influxdb@v$INFLUXDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" &&
        [[ -n "$source" && -f "$source/go.mod" ]] &&
        pkgconfig_version="$(awk '$1 == "github.com/influxdata/pkg-config" { print $2 }' "$source/go.mod")" &&
        GOBIN="$work/bin" go install "github.com/influxdata/pkg-config@$pkgconfig_version" &&
        (cd "$source" && PATH="$work/bin:$PATH" RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}" RUSTC_WRAPPER="$work/rustc-cap-lints" \
          go build -ldflags "-X main.version=$INFLUXDB_VERSION -X main.branch=v$INFLUXDB_VERSION" -o "$work/bin/influxd" ./cmd/influxd &&
          go build -ldflags "-X main.version=$INFLUXDB_VERSION" -o "$work/bin/influx" ./cmd/influx)
    } >"$build_log" 2>&1; then
      flock -u 8
      echo "the build failed: $(grep -m1 -iE 'error|fatal' "$build_log" || tail -n 1 "$build_log") (log: $build_log)"
      return 1
    fi
    mkdir -p "$BUILD_DIR/bin"
    mv "$work/bin/influxd" "$work/bin/influx" "$BUILD_DIR/bin/"
    rm -rf -- "$work"
    log "built $("$BUILT_INFLUXD" version)"
  fi
  flock -u 8
  exec 8>&-
}

# Sets INFLUXD to the influxd to run: $INFLUXD, the built one, or Debian's (installed when missing).
ensure_installed() {
  command -v curl >/dev/null || apt_install curl
  if [[ -n "${INFLUXD:-}" ]]; then
    [[ -x "$INFLUXD" ]] || die "INFLUXD=$INFLUXD is not an executable"
    return 0
  fi
  local why
  if why="$(build_influxd)"; then
    INFLUXD="$BUILT_INFLUXD"
    return 0
  fi
  log "cannot build InfluxDB $INFLUXDB_VERSION ($why); falling back to Debian's influxdb package"
  command -v influxd >/dev/null || apt_install influxdb
  command -v influxd >/dev/null || die "influxd still not on PATH after installing influxdb"
  stop_package_service
  INFLUXD="$(command -v influxd)"
}

# --- config ------------------------------------------------------------------

write_config() {
  mkdir -p "$INFLUX_DATA_DIR/meta" "$INFLUX_DATA_DIR/data" "$INFLUX_DATA_DIR/wal"
  touch "$OWNER_MARKER"
  cat >"$CONF_FILE" <<EOF
# Generated by scripts/infra/influx.sh: private local InfluxDB 1.x instance.
# No usage reporting (Debian's build reads reporting-enabled, upstream reporting-disabled).
reporting-enabled = false
reporting-disabled = true
# Backup/restore RPC.
bind-address = "127.0.0.1:$INFLUX_RPC_PORT"

[meta]
  dir = "$INFLUX_DATA_DIR/meta"
  logging-enabled = false

[data]
  dir = "$INFLUX_DATA_DIR/data"
  wal-dir = "$INFLUX_DATA_DIR/wal"
  query-log-enabled = false

[coordinator]

[retention]

[shard-precreation]

[monitor]
  # No _internal database: less disk and CPU churn.
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$INFLUX_PORT"
  auth-enabled = true
  log-enabled = false
  suppress-write-log = true
  write-tracing = false
  pprof-enabled = false
  # Large gzip'd line-protocol batches (limit applies to the request body): 256 MiB.
  max-body-size = 268435456

[ifql]
  enabled = false

[logging]
  format = "logfmt"
  level = "info"
  suppress-logo = true

[subscriber]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = true
  log-enabled = false
EOF
}

# --- users ---------------------------------------------------------------------

# A value as a single-quoted shell word.
shell_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Writes the credentials of a fresh data dir (passwords random unless given).
write_credentials() {
  local admin_password="${INFLUX_ADMIN_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')}"
  local password="${INFLUX_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')}"
  (
    umask 077
    {
      echo "# Written by scripts/infra/influx.sh for the InfluxDB on $URL."
      echo "INFLUX_URL=$(shell_quote "$URL")"
      echo "INFLUX_DB=$(shell_quote "$INFLUX_DB")"
      echo "INFLUX_ADMIN_USER=$(shell_quote "$INFLUX_ADMIN_USER")"
      echo "INFLUX_ADMIN_PASSWORD=$(shell_quote "$admin_password")"
      echo "INFLUX_USERNAME=$(shell_quote "$INFLUX_USERNAME")"
      echo "INFLUX_PASSWORD=$(shell_quote "$password")"
    } >"$CREDENTIALS_FILE"
  )
}

# An InfluxQL string literal and identifier.
iql_string() { local v="${1//\\/\\\\}"; printf "'%s'" "${v//\'/\\\'}"; }
iql_ident() { local v="${1//\\/\\\\}"; printf '"%s"' "${v//\"/\\\"}"; }

# Runs InfluxQL statements on the running server (as the admin, once there is one).
influxql() {
  local statement out auth=()
  for statement in "$@"; do
    [[ "$statement" == CREATE\ USER*ALL\ PRIVILEGES ]] || auth=(-u "$INFLUX_ADMIN_USER:$INFLUX_ADMIN_PASSWORD")
    if ! out="$(curl -sS -m 10 "${auth[@]}" -XPOST "$URL/query" --data-urlencode "q=$statement" 2>&1)" || [[ "$out" == *'"error"'* ]]; then
      die "InfluxDB refused a statement while creating its users: ${out//$INFLUX_ADMIN_PASSWORD/(hidden)}"
    fi
  done
}

# The users and database of docker-compose's influxdb image (its init-influxdb.sh, from
# INFLUXDB_ADMIN_USER, INFLUXDB_DB and INFLUXDB_USER): an admin with all privileges, the database,
# and a user with all privileges on that database only, so not allowed to create databases.
create_users() {
  # shellcheck disable=SC1090
  . "$CREDENTIALS_FILE"
  influxql "CREATE USER $(iql_ident "$INFLUX_ADMIN_USER") WITH PASSWORD $(iql_string "$INFLUX_ADMIN_PASSWORD") WITH ALL PRIVILEGES" \
    "CREATE DATABASE $(iql_ident "$INFLUX_DB")" \
    "CREATE USER $(iql_ident "$INFLUX_USERNAME") WITH PASSWORD $(iql_string "$INFLUX_PASSWORD")" \
    "REVOKE ALL PRIVILEGES FROM $(iql_ident "$INFLUX_USERNAME")" \
    "GRANT ALL ON $(iql_ident "$INFLUX_DB") TO $(iql_ident "$INFLUX_USERNAME")"
  log "created admin $INFLUX_ADMIN_USER, database $INFLUX_DB and user $INFLUX_USERNAME (GRANT ALL ON $INFLUX_DB); credentials in $CREDENTIALS_FILE"
}

# --- commands ----------------------------------------------------------------

cmd_start() {
  local pid
  if pid="$(running_pid)"; then
    log "already running (pid $pid), $URL"
    echo "$URL"
    return 0
  fi
  ensure_installed
  for port in "$INFLUX_PORT" "$INFLUX_RPC_PORT"; do
    port_in_use "$port" && die "port $port on 127.0.0.1 is already in use by another process"
  done

  rm -f "$PID_FILE"
  # Leftovers of a crashed or killed instance: start clean unless data is to be kept.
  if [[ "$INFLUX_KEEP_DATA" != 1 && -f "$OWNER_MARKER" ]]; then
    log "removing stale data dir $INFLUX_DATA_DIR"
    rm -rf -- "$INFLUX_DATA_DIR"
  fi
  local fresh=1
  [[ -f "$CREDENTIALS_FILE" ]] && fresh=0
  write_config
  if ((fresh)); then write_credentials; fi

  local influxd="$INFLUXD"
  log "starting $("$influxd" version 2>/dev/null || echo influxd) on $URL (rpc 127.0.0.1:$INFLUX_RPC_PORT, data $INFLUX_DATA_DIR)"
  # bash writes its own pid, then execs influxd: the pid file holds influxd's pid even if
  # setsid has to fork.
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash
  (cd "$INFLUX_DATA_DIR" && exec setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$influxd" -config "$CONF_FILE" >"$LOG_FILE" 2>&1 </dev/null) &

  local start=$SECONDS
  while :; do
    if [[ "$(ping_code)" == 204 ]] && running_pid >/dev/null; then
      break
    fi
    if ((SECONDS - start > 2)) && ! running_pid >/dev/null; then
      tail_log "$LOG_FILE"
      die "influxd exited during startup"
    fi
    if ((SECONDS - start >= INFLUX_START_TIMEOUT)); then
      tail_log "$LOG_FILE"
      if pid="$(running_pid)"; then
        log "not ready after ${INFLUX_START_TIMEOUT}s, stopping pid $pid"
        terminate "$pid"
      fi
      die "influxd did not answer $URL/ping within ${INFLUX_START_TIMEOUT}s (log: $LOG_FILE)"
    fi
    sleep 0.2
  done
  if ((fresh)); then create_users; fi
  log "ready in $((SECONDS - start))s (pid $(cat "$PID_FILE")), credentials in $CREDENTIALS_FILE"
  echo "$URL"
}

cmd_stop() {
  local pid
  if pid="$(running_pid)"; then
    log "stopping pid $pid"
    terminate "$pid"
    if kill -0 "$pid" 2>/dev/null; then die "pid $pid did not exit"; fi
    log "stopped"
  else
    log "not running"
  fi
  rm -f "$PID_FILE"
  remove_data_dir
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    log "running (pid $pid), $URL, data $INFLUX_DATA_DIR"
    return 0
  fi
  log "not running"
  return 1
}

cmd_logs() {
  [[ -f "$LOG_FILE" ]] || die "no log at $LOG_FILE"
  if (($#)); then exec tail "$@" "$LOG_FILE"; else exec tail -n 200 "$LOG_FILE"; fi
}

cmd_build() {
  local why
  why="$(build_influxd)" || die "cannot build InfluxDB $INFLUXDB_VERSION: $why"
  echo "$BUILT_INFLUXD"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  credentials) [[ -f "$CREDENTIALS_FILE" ]] || die "no credentials at $CREDENTIALS_FILE (not started?)"; echo "$CREDENTIALS_FILE" ;;
  build) cmd_build ;;
  logs) shift; cmd_logs "$@" ;;
  *) echo "usage: $0 start|stop|status|credentials|build|logs [tail args]" >&2; exit 2 ;;
esac
