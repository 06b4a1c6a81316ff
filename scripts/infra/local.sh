#!/usr/bin/env bash
# Source this file: `use_local_infra` starts a real Kafka broker and InfluxDB on this machine unless
# KAFKA_BROKERS / INFLUX_URL already point somewhere (or they are already running), exports both,
# and stops on exit only what it started.
_local_infra_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_local_infra_started=()

_local_infra_cleanup() {
  for which in "${_local_infra_started[@]}"; do bash "$_local_infra_dir/$which.sh" stop || true; done
}

use_local_infra() {
  trap _local_infra_cleanup EXIT
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
    export INFLUX_URL="http://127.0.0.1:${INFLUX_PORT:-8086}"
  fi
}
