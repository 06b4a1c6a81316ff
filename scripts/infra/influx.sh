#!/usr/bin/env bash
# A real InfluxDB 1.x (Debian's `influxdb` package) for local development and integration
# tests, run as a private instance with its own config and data dir.
#
#   scripts/infra/influx.sh start    install influxd if missing, start it, wait for /ping
#   scripts/infra/influx.sh stop     stop it (pid file only), remove its data dir
#   scripts/infra/influx.sh status   exit 0 if it is running
#   scripts/infra/influx.sh logs [ARGS]  tail its log (ARGS go to tail, default -n 200)
#
# Environment (defaults):
#   INFLUX_PORT=8086        HTTP API (bound to 127.0.0.1)
#   INFLUX_RPC_PORT=8088    backup/restore RPC bind address (127.0.0.1)
#   INFLUX_DATA_DIR=${TMPDIR:-/tmp}/tradeflow-influx-$INFLUX_PORT
#   INFLUX_START_TIMEOUT=60 (seconds)
#   INFLUX_KEEP_DATA=0 (1: stop keeps the data dir and start reuses it; otherwise every start
#                       begins from an empty data dir)
set -euo pipefail

INFLUX_PORT="${INFLUX_PORT:-8086}"
INFLUX_RPC_PORT="${INFLUX_RPC_PORT:-8088}"
INFLUX_DATA_DIR="${INFLUX_DATA_DIR:-${TMPDIR:-/tmp}/tradeflow-influx-$INFLUX_PORT}"
INFLUX_START_TIMEOUT="${INFLUX_START_TIMEOUT:-60}"
INFLUX_KEEP_DATA="${INFLUX_KEEP_DATA:-0}"

PID_FILE="$INFLUX_DATA_DIR/influxd.pid"
LOG_FILE="$INFLUX_DATA_DIR/influxd.log"
CONF_FILE="$INFLUX_DATA_DIR/influxdb.conf"
OWNER_MARKER="$INFLUX_DATA_DIR/.tradeflow-influx"
URL="http://127.0.0.1:$INFLUX_PORT"

log() { echo "[influx] $*" >&2; }
die() { log "$*"; exit 1; }

# --- process helpers ---------------------------------------------------------

# Prints the pid from the pid file if that process is alive and is our influxd.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *"-config $CONF_FILE"* ]] || return 1
  echo "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ping_code() {
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL/ping" 2>/dev/null || true
}

tail_log() {
  if [[ -f "$LOG_FILE" ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2 || true
  fi
}

# Sends SIGTERM, waits up to 30 s, then SIGKILL.
terminate() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid still alive after 30 s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

remove_data_dir() {
  if [[ "$INFLUX_KEEP_DATA" == 1 ]]; then
    log "keeping data dir $INFLUX_DATA_DIR (INFLUX_KEEP_DATA=1)"
  elif [[ -f "$OWNER_MARKER" ]]; then
    rm -rf -- "$INFLUX_DATA_DIR"
  elif [[ -e "$INFLUX_DATA_DIR" ]]; then
    log "not removing $INFLUX_DATA_DIR: it was not created by this script"
  fi
}

# --- install -----------------------------------------------------------------

apt_install() {
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  local pkg
  for pkg in "$@"; do
    # (not `apt-cache ... | grep -q`: with pipefail, grep's early exit fails the pipe)
    if [[ "$(apt-cache policy "$pkg" 2>/dev/null || true)" != *"Candidate: "[0-9]* ]]; then
      log "apt-get update"
      "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=120 update -qq >&2
      break
    fi
  done
  # The package's postinst runs `invoke-rc.d influxdb start`, which would start a second
  # influxd on :8086 with /etc/influxdb/influxdb.conf. A policy-rc.d that exits 101 makes
  # invoke-rc.d skip that (there is no systemd here, so its unit is never started either).
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from tradeflow scripts/infra/influx.sh\nexit 101\n' \
      | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  log "apt-get install $*"
  local rc=0
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "$@" >&2 || rc=$?
  if ((made_policy)); then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; fi
  ((rc == 0)) || die "apt-get install $* failed"
  # Nor should it start at boot (postinst enables both the sysv script and the unit).
  if [[ -x /etc/init.d/influxdb ]]; then
    "${sudo[@]}" update-rc.d influxdb disable >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null; then
      "${sudo[@]}" systemctl disable influxdb.service >/dev/null 2>&1 || true
    fi
  fi
}

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

ensure_installed() {
  local missing=()
  command -v influxd >/dev/null || missing+=(influxdb)
  command -v curl >/dev/null || missing+=(curl)
  if ((${#missing[@]})); then
    apt_install "${missing[@]}"
    command -v influxd >/dev/null || die "influxd still not on PATH after installing influxdb"
  fi
  stop_package_service
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
  auth-enabled = false
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
  write_config

  local influxd
  influxd="$(command -v influxd)"
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
      tail_log
      die "influxd exited during startup"
    fi
    if ((SECONDS - start >= INFLUX_START_TIMEOUT)); then
      tail_log
      if pid="$(running_pid)"; then
        log "not ready after ${INFLUX_START_TIMEOUT}s, stopping pid $pid"
        terminate "$pid"
      fi
      die "influxd did not answer $URL/ping within ${INFLUX_START_TIMEOUT}s (log: $LOG_FILE)"
    fi
    sleep 0.2
  done
  log "ready in $((SECONDS - start))s (pid $(cat "$PID_FILE"))"
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

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  *) echo "usage: $0 start|stop|status|logs [tail args]" >&2; exit 2 ;;
esac
