#!/usr/bin/env bash
# The influxdb:1.11 image's start on this machine: its entrypoint.sh, and init-influxdb.sh at the
# first start of the data volume, which creates INFLUXDB_DB, the admin and INFLUXDB_USER with a
# temporary server on 127.0.0.1 (passwords pasted unquoted into the influx command line and into
# InfluxQL, as the image does). influxd and influx are the version the image ships, on PATH.
#   TF_ROOT: the container's root (the image's /etc/influxdb/influxdb.conf is under it)
#   TF_META_DIR: where the image's /var/lib/influxdb/meta is on this machine
# Everything else in the environment is the container's, exactly as compose gives it.
set -e
root="${TF_ROOT:?}"
default_meta_dir="${TF_META_DIR:?}"
unset TF_ROOT TF_META_DIR
config="$root/etc/influxdb/influxdb.conf"
export INFLUXDB_CONFIG_PATH="$config"

init_influxdb() {
  local AUTH_ENABLED INIT_USERS META_DIR INIT_QUERY CREATE_DB_QUERY INFLUXDB_INIT_PORT INFLUX_CMD pid i
  AUTH_ENABLED="${INFLUXDB_HTTP_AUTH_ENABLED:-}"
  if [ -z "$AUTH_ENABLED" ]; then
    AUTH_ENABLED="$(grep -iE '^\s*auth-enabled\s*=\s*true' "$config" | grep -io 'true' | cut -d ' ' -f 1 || true)"
  else
    AUTH_ENABLED="$(echo "$INFLUXDB_HTTP_AUTH_ENABLED" | grep -io 'true' | cut -d ' ' -f 1 || true)"
  fi
  INIT_USERS=$([ -n "$AUTH_ENABLED" ] && [ -n "${INFLUXDB_ADMIN_USER:-}" ] && echo 1 || echo)
  META_DIR=${INFLUXDB_META_DIR:-$default_meta_dir}
  if { [ -n "$INIT_USERS" ] || [ -n "${INFLUXDB_DB:-}" ]; } && [ ! "$(ls -d "$META_DIR" 2>/dev/null)" ]; then
    INIT_QUERY=""
    CREATE_DB_QUERY="CREATE DATABASE ${INFLUXDB_DB:-}"
    if [ -n "$INIT_USERS" ]; then
      if [ -z "${INFLUXDB_ADMIN_PASSWORD:-}" ]; then
        INFLUXDB_ADMIN_PASSWORD="$(tr -dc _A-Z-a-z-0-9 </dev/urandom | head -c32; echo)"
        echo "INFLUXDB_ADMIN_PASSWORD:$INFLUXDB_ADMIN_PASSWORD"
      fi
      INIT_QUERY="CREATE USER \"$INFLUXDB_ADMIN_USER\" WITH PASSWORD '$INFLUXDB_ADMIN_PASSWORD' WITH ALL PRIVILEGES"
    elif [ -n "${INFLUXDB_DB:-}" ]; then
      INIT_QUERY="$CREATE_DB_QUERY"
    else
      INIT_QUERY="SHOW DATABASES"
    fi
    INFLUXDB_INIT_PORT="8086"
    INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:$INFLUXDB_INIT_PORT INFLUXDB_HTTP_HTTPS_ENABLED=false influxd "$@" &
    pid="$!"
    INFLUX_CMD="influx -host 127.0.0.1 -port $INFLUXDB_INIT_PORT -execute "
    for i in {30..0}; do
      # shellcheck disable=SC2086 # as the image: the command is split into words
      if $INFLUX_CMD "$INIT_QUERY" &>/dev/null; then break; fi
      echo 'influxdb init process in progress...'
      sleep 1
    done
    if [ "$i" = 0 ]; then
      echo >&2 'influxdb init process failed.'
      exit 1
    fi
    if [ -n "$INIT_USERS" ]; then
      INFLUX_CMD="influx -host 127.0.0.1 -port $INFLUXDB_INIT_PORT -username ${INFLUXDB_ADMIN_USER} -password ${INFLUXDB_ADMIN_PASSWORD} -execute "
      # shellcheck disable=SC2086
      if [ -n "${INFLUXDB_DB:-}" ]; then $INFLUX_CMD "$CREATE_DB_QUERY"; fi
      if [ -n "${INFLUXDB_USER:-}" ] && [ -z "${INFLUXDB_USER_PASSWORD:-}" ]; then
        INFLUXDB_USER_PASSWORD="$(tr -dc _A-Z-a-z-0-9 </dev/urandom | head -c32; echo)"
        echo "INFLUXDB_USER_PASSWORD:$INFLUXDB_USER_PASSWORD"
      fi
      if [ -n "${INFLUXDB_USER:-}" ]; then
        # shellcheck disable=SC2086
        $INFLUX_CMD "CREATE USER \"$INFLUXDB_USER\" WITH PASSWORD '$INFLUXDB_USER_PASSWORD'"
        # shellcheck disable=SC2086
        $INFLUX_CMD "REVOKE ALL PRIVILEGES FROM \"$INFLUXDB_USER\""
        # shellcheck disable=SC2086
        if [ -n "${INFLUXDB_DB:-}" ]; then $INFLUX_CMD "GRANT ALL ON \"$INFLUXDB_DB\" TO \"$INFLUXDB_USER\""; fi
      fi
      if [ -n "${INFLUXDB_WRITE_USER:-}" ] || [ -n "${INFLUXDB_READ_USER:-}" ]; then
        echo >&2 'INFLUXDB_WRITE_USER and INFLUXDB_READ_USER are not part of this emulation of the image'
        exit 1
      fi
    fi
    if ! kill -s TERM "$pid" || ! wait "$pid"; then
      echo >&2 'influxdb init process failed. (Could not stop influxdb)'
      exit 1
    fi
  fi
}

if [ "${1:0:1}" = '-' ]; then set -- influxd "$@"; fi
if [ "$1" = 'influxd' ]; then init_influxdb "${@:2}"; fi
exec "$@"
