#!/usr/bin/env bash
# Source this file: `use_local_infra` starts a real Kafka broker and InfluxDB on this machine unless
# KAFKA_BROKERS / INFLUX_URL already point somewhere (or they are already running), exports both
# (and the local InfluxDB's database and user: INFLUX_DB, INFLUX_USERNAME, INFLUX_PASSWORD), and
# stops on exit only what it started.
_local_infra_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_local_infra_started=()

_local_infra_cleanup() {
  # A closed terminal may send SIGHUP again: stopping goes on regardless.
  trap '' HUP
  for which in "${_local_infra_started[@]}"; do bash "$_local_infra_dir/$which.sh" stop || true; done
}

use_local_infra() {
  trap _local_infra_cleanup EXIT
  # The terminal closing (SIGHUP, which the foreground program gets too): once it has stopped,
  # exit, which stops what was started here. Ctrl-C: the program stops, and the script goes on to
  # its end and exits 0 the same way.
  trap 'exit 129' HUP
  if [ -z "${KAFKA_BROKERS:-}" ]; then
    if ! bash "$_local_infra_dir/kafka.sh" status >/dev/null 2>&1; then
      bash "$_local_infra_dir/kafka.sh" start
      _local_infra_started+=(kafka)
    fi
    export KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT:-9092}"
  fi
  if [ -z "${INFLUX_URL:-}" ]; then
    if ! bash "$_local_infra_dir/influx.sh" status >/dev/null 2>&1; then
      bash "$_local_infra_dir/influx.sh" start
      _local_infra_started+=(influx)
    fi
    local credentials
    credentials="$(bash "$_local_infra_dir/influx.sh" credentials)"
    # shellcheck disable=SC1090
    . "$credentials"
    export INFLUX_URL INFLUX_DB INFLUX_USERNAME INFLUX_PASSWORD INFLUX_ADMIN_USER INFLUX_ADMIN_PASSWORD
  fi
}
