#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) for local
# development and integration tests, run from Apache Kafka's jars on Maven Central.
#
#   scripts/infra/kafka.sh start       download jars once, format storage, start, wait until ready
#   scripts/infra/kafka.sh stop        stop the broker (pid file only), remove its data dir
#   scripts/infra/kafka.sh status      exit 0 if the broker is running
#   scripts/infra/kafka.sh logs [ARGS] tail the broker log (ARGS go to tail, default -n 200)
#
# Environment (defaults):
#   KAFKA_PORT=9092  KAFKA_CONTROLLER_PORT=9093  KAFKA_HEAP=512m
#   KAFKA_DATA_DIR=${TMPDIR:-/tmp}/tradeflow-kafka-$KAFKA_PORT
#   KAFKA_START_TIMEOUT=90 (seconds)
#   KAFKA_KEEP_DATA=0 (1: stop keeps the data dir and start reuses it; otherwise every start
#                      begins from an empty, freshly formatted data dir)
#   XDG_CACHE_HOME / HOME: jars are cached in ${XDG_CACHE_HOME:-$HOME/.cache}/tradeflow/
#
# Admin tools (kafka-tools) are on the cached classpath; `classpath` prints it, e.g.:
#   java -Dlog4j2.configurationFile="$KAFKA_DATA_DIR/tools-log4j2.properties" \
#     -cp "$(scripts/infra/kafka.sh classpath)" org.apache.kafka.tools.TopicCommand \
#     --bootstrap-server 127.0.0.1:9092 --list
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.sh
. "$SCRIPT_DIR/versions.sh"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-${TMPDIR:-/tmp}/tradeflow-kafka-$KAFKA_PORT}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_KEEP_DATA="${KAFKA_KEEP_DATA:-0}"

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tradeflow/kafka-$KAFKA_VERSION"
LIBS_DIR="$CACHE_DIR/libs"
LIBS_MARKER="$LIBS_DIR/.complete"
PID_FILE="$KAFKA_DATA_DIR/kafka.pid"
LOG_FILE="$KAFKA_DATA_DIR/kafka.log"
OWNER_MARKER="$KAFKA_DATA_DIR/.tradeflow-kafka"
READY_LINE="Kafka Server started"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

log() { echo "[kafka] $*" >&2; }
die() { log "$*"; exit 1; }

# --- process helpers ---------------------------------------------------------

# Prints the pid from the pid file if that process is alive and is our broker.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: the process must be a JVM running kafka.Kafka on our config.
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *"kafka.Kafka $KAFKA_DATA_DIR/server.properties"* ]] || return 1
  echo "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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
  if [[ "$KAFKA_KEEP_DATA" == 1 ]]; then
    log "keeping data dir $KAFKA_DATA_DIR (KAFKA_KEEP_DATA=1)"
  elif [[ -f "$OWNER_MARKER" ]]; then
    rm -rf -- "$KAFKA_DATA_DIR"
  elif [[ -e "$KAFKA_DATA_DIR" ]]; then
    log "not removing $KAFKA_DATA_DIR: it was not created by this script"
  fi
}

# --- jars --------------------------------------------------------------------

fetch_jars() {
  [[ -f "$LIBS_MARKER" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (needed once to download Kafka $KAFKA_VERSION jars)"
  mkdir -p "$CACHE_DIR"
  # Serialise concurrent downloads (e.g. two brokers on different ports starting at once).
  exec 8>"$CACHE_DIR/.lock"
  flock 8
  if [[ ! -f "$LIBS_MARKER" ]]; then
    log "downloading Kafka $KAFKA_VERSION jars (log4j $LOG4J_VERSION) into $LIBS_DIR"
    rm -rf -- "$LIBS_DIR" "$CACHE_DIR/build"
    mkdir -p "$CACHE_DIR/build"
    # Build from a copy so Maven never writes into the repo.
    cp "$SCRIPT_DIR/kafka-pom.xml" "$CACHE_DIR/build/pom.xml"
    if ! (cd "$CACHE_DIR/build" && mvn -q -B -Dstyle.color=never -f pom.xml \
        -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR" \
        >"$CACHE_DIR/mvn.log" 2>&1); then
      tail -n 40 "$CACHE_DIR/mvn.log" >&2
      rm -rf -- "$LIBS_DIR"
      die "Maven could not download the Kafka $KAFKA_VERSION jars (log: $CACHE_DIR/mvn.log)"
    fi
    [[ -f "$LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar" && -f "$LIBS_DIR/log4j-slf4j-impl-$LOG4J_VERSION.jar" ]] \
      || die "download incomplete: kafka_2.13 or log4j-slf4j-impl jar missing in $LIBS_DIR"
    rm -rf -- "$CACHE_DIR/build"
    echo "$KAFKA_VERSION" >"$LIBS_MARKER"
  fi
  flock -u 8
  exec 8>&-
}

# --- config ------------------------------------------------------------------

write_config() {
  mkdir -p "$KAFKA_DATA_DIR/kraft-logs" "$KAFKA_DATA_DIR/logs"
  touch "$OWNER_MARKER"
  cat >"$KAFKA_DATA_DIR/server.properties" <<EOF
# Generated by scripts/infra/kafka.sh: single-node KRaft (combined broker + controller).
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA_DIR/kraft-logs

# Topics: created explicitly, 6 partitions unless told otherwise.
num.partitions=6
auto.create.topics.enable=false
default.replication.factor=1
min.insync.replicas=1

# Internal topics on one broker: RF 1 / min ISR 1 (otherwise coordinators never come up),
# few partitions so they are created quickly.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=6

# Test-friendly: no initial rebalance delay, small cleaner buffer (default allocates 128 MiB).
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=8388608
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  cat >"$KAFKA_DATA_DIR/log4j2.properties" <<'EOF'
# Generated by scripts/infra/kafka.sh: console only (stdout is redirected to kafka.log).
status = warn
name = tradeflow-kafka
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
  # For admin tools run against this broker (-Dlog4j2.configurationFile=...): warnings only.
  cat >"$KAFKA_DATA_DIR/tools-log4j2.properties" <<'EOF'
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
}

# Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (22 chars).
# Generated here to save a JVM start; the first char must not be '-' (CLI option parsing).
new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
    [[ "$id" =~ ^[A-Za-z0-9] ]] && { echo "$id"; return; }
  done
}

java_opts() {
  echo "-Xms$KAFKA_HEAP -Xmx$KAFKA_HEAP -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20" \
    "-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent" \
    "-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true" \
    "-Dlog4j2.configurationFile=$KAFKA_DATA_DIR/log4j2.properties" \
    "-Dkafka.logs.dir=$KAFKA_DATA_DIR/logs"
}

# --- commands ----------------------------------------------------------------

cmd_start() {
  local pid
  if pid="$(running_pid)"; then
    log "already running (pid $pid), bootstrap $BOOTSTRAP"
    echo "$BOOTSTRAP"
    return 0
  fi
  command -v "$JAVA" >/dev/null || die "java not found (Java 17+ required)"
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_in_use "$port" && die "port $port on 127.0.0.1 is already in use by another process"
  done
  fetch_jars

  rm -f "$PID_FILE"
  # Leftovers of a crashed or killed broker: start clean unless data is to be kept.
  if [[ "$KAFKA_KEEP_DATA" != 1 && -f "$OWNER_MARKER" ]]; then
    log "removing stale data dir $KAFKA_DATA_DIR"
    rm -rf -- "$KAFKA_DATA_DIR"
  fi
  write_config
  local -a opts
  read -r -a opts <<<"$(java_opts)"
  local cp="$LIBS_DIR/*"

  # Format only a fresh log dir: a kept one (KAFKA_KEEP_DATA=1) is reused as is (-g alone
  # would still fail on it, since a new random cluster id does not match the stored one).
  if [[ -f "$KAFKA_DATA_DIR/kraft-logs/meta.properties" ]]; then
    log "reusing formatted storage in $KAFKA_DATA_DIR/kraft-logs"
  elif ! "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$KAFKA_DATA_DIR/log4j2.properties" \
      -cp "$cp" kafka.tools.StorageTool format \
      -t "$(new_cluster_id)" -c "$KAFKA_DATA_DIR/server.properties" --standalone -g \
      >"$KAFKA_DATA_DIR/format.log" 2>&1; then
    tail -n 20 "$KAFKA_DATA_DIR/format.log" >&2
    die "formatting storage in $KAFKA_DATA_DIR/kraft-logs failed"
  fi

  log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, data $KAFKA_DATA_DIR)"
  # bash writes its own pid, then execs java: the pid file holds the JVM's pid even if
  # setsid has to fork.
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash
  (cd "$KAFKA_DATA_DIR" && exec setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$JAVA" "${opts[@]}" -cp "$cp" kafka.Kafka "$KAFKA_DATA_DIR/server.properties" \
    >"$LOG_FILE" 2>&1 </dev/null) &

  local start=$SECONDS
  while :; do
    if grep -q "$READY_LINE" "$LOG_FILE" 2>/dev/null && running_pid >/dev/null \
        && port_in_use "$KAFKA_PORT"; then
      break
    fi
    if ((SECONDS - start > 2)) && ! running_pid >/dev/null; then
      tail_log
      die "broker process exited during startup"
    fi
    if ((SECONDS - start >= KAFKA_START_TIMEOUT)); then
      tail_log
      if pid="$(running_pid)"; then
        log "not ready after ${KAFKA_START_TIMEOUT}s, stopping pid $pid"
        terminate "$pid"
      fi
      die "broker did not become ready within ${KAFKA_START_TIMEOUT}s (log: $LOG_FILE)"
    fi
    sleep 0.2
  done
  log "ready in $((SECONDS - start))s (pid $(cat "$PID_FILE")): $(grep -m1 "$READY_LINE" "$LOG_FILE")"
  echo "$BOOTSTRAP"
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
    log "running (pid $pid), bootstrap $BOOTSTRAP, data $KAFKA_DATA_DIR"
    return 0
  fi
  log "not running"
  return 1
}

cmd_logs() {
  [[ -f "$LOG_FILE" ]] || die "no log at $LOG_FILE"
  if (($#)); then exec tail "$@" "$LOG_FILE"; else exec tail -n 200 "$LOG_FILE"; fi
}

cmd_classpath() {
  fetch_jars
  echo "$LIBS_DIR/*"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  logs) shift; cmd_logs "$@" ;;
  classpath) cmd_classpath ;;
  *) echo "usage: $0 start|stop|status|logs [tail args]|classpath" >&2; exit 2 ;;
esac
