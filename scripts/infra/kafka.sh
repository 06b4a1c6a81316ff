#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, combined broker+controller) for local development and
# integration tests, run from Apache Kafka's jars on Maven Central; or, with KAFKA_NODES=3, a
# cluster of three such nodes on loopback ports (a controller quorum of three, replication factor 3
# and min.insync.replicas 2 for every topic, the internal ones too).
#
#   scripts/infra/kafka.sh start         download jars once, format storage, start, wait until ready;
#                                        prints the bootstrap list
#   scripts/infra/kafka.sh stop          stop every node (pid files only), remove the data dir
#   scripts/infra/kafka.sh status        exit 0 if every node is running
#   scripts/infra/kafka.sh logs [ARGS]   tail the (first node's) log (ARGS go to tail, default -n 200)
#   scripts/infra/kafka.sh kill-node N   SIGKILL node N (1..KAFKA_NODES), as a crash would; its data stays
#   scripts/infra/kafka.sh start-node N  start node N again on its data and wait until it is ready
#   scripts/infra/kafka.sh sasl-credentials  print the SASL listener's bootstrap list, user and
#                                        password (KAFKA_SASL_PORT set), one per line
#
# Environment (defaults):
#   KAFKA_NODES=1: node N (from 1) listens on KAFKA_PORT + 2(N-1), its controller on
#                  KAFKA_CONTROLLER_PORT + 2(N-1), its data in $KAFKA_DATA_DIR/node-N (one node: in
#                  $KAFKA_DATA_DIR itself)
#   KAFKA_PORT=9092  KAFKA_CONTROLLER_PORT=9093  KAFKA_HEAP=512m
#   KAFKA_GC_OPTS="-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35"
#   KAFKA_DATA_DIR=${TMPDIR:-/tmp}/tradeflow-kafka-$KAFKA_PORT
#   KAFKA_SASL_PORT (unset: none): also a SASL_PLAINTEXT listener, node N's on KAFKA_SASL_PORT + 2(N-1),
#                  taking PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for one user, `tradeflow`, whose
#                  password is made at random when the storage is formatted (sasl-credentials prints it)
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
KAFKA_GC_OPTS="${KAFKA_GC_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_KEEP_DATA="${KAFKA_KEEP_DATA:-0}"
KAFKA_NODES="${KAFKA_NODES:-1}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-}"
[[ -z "$KAFKA_SASL_PORT" || "$KAFKA_SASL_PORT" =~ ^[1-9][0-9]*$ ]] || { echo "[kafka] KAFKA_SASL_PORT=$KAFKA_SASL_PORT: must be a port number" >&2; exit 2; }
SASL_USER=tradeflow
[[ "$KAFKA_NODES" =~ ^[1-9]$ ]] || { echo "[kafka] KAFKA_NODES=$KAFKA_NODES: must be 1 to 9" >&2; exit 2; }

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tradeflow/kafka-$KAFKA_VERSION"
LIBS_DIR="$CACHE_DIR/libs"
LIBS_MARKER="$LIBS_DIR/.complete"
OWNER_MARKER="$KAFKA_DATA_DIR/.tradeflow-kafka"
SASL_PASSWORD_FILE="$KAFKA_DATA_DIR/sasl-password"
READY_LINE="Kafka Server started"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
# Replication: every node holds every partition, and writes need two of three in sync.
REPLICATION=$((KAFKA_NODES < 3 ? KAFKA_NODES : 3))
MIN_ISR=$((REPLICATION > 1 ? 2 : 1))

node_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
node_controller_port() { echo $((KAFKA_CONTROLLER_PORT + 2 * ($1 - 1))); }
node_sasl_port() { echo $((KAFKA_SASL_PORT + 2 * ($1 - 1))); }
node_dir() { if ((KAFKA_NODES == 1)); then echo "$KAFKA_DATA_DIR"; else echo "$KAFKA_DATA_DIR/node-$1"; fi; }

BOOTSTRAP=""
VOTERS=""
for ((n = 1; n <= KAFKA_NODES; n++)); do
  BOOTSTRAP+="${BOOTSTRAP:+,}127.0.0.1:$(node_port $n)"
  VOTERS+="${VOTERS:+,}$n@127.0.0.1:$(node_controller_port $n)"
done

# Selects node N: NODE, NODE_PORT, NODE_CONTROLLER_PORT, NODE_DIR, PID_FILE, LOG_FILE.
select_node() {
  NODE="$1"
  NODE_PORT="$(node_port "$1")"
  NODE_CONTROLLER_PORT="$(node_controller_port "$1")"
  NODE_DIR="$(node_dir "$1")"
  PID_FILE="$NODE_DIR/kafka.pid"
  LOG_FILE="$NODE_DIR/kafka.log"
}
select_node 1

# Never fails: after a terminal closed, stderr is gone and stopping must go on.
log() { echo "[kafka] $*" 1>&2 2>/dev/null || true; }
die() { log "$*"; exit 1; }
# shellcheck source-path=SCRIPTDIR source=process.sh
. "$SCRIPT_DIR/process.sh"

# --- process helpers ---------------------------------------------------------

# Prints the pid from the pid file if that process is alive and is our broker.
running_pid() { pid_matching "$PID_FILE" "kafka.Kafka $NODE_DIR/server.properties"; }

remove_data_dir() { remove_owned_dir "$KAFKA_DATA_DIR" "$KAFKA_KEEP_DATA" "$OWNER_MARKER" KAFKA_KEEP_DATA; }

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
  mkdir -p "$NODE_DIR/kraft-logs" "$NODE_DIR/logs"
  touch "$OWNER_MARKER"
  local quorum
  # One node: a dynamic quorum of itself (formatted --standalone); several: a static one.
  if ((KAFKA_NODES == 1)); then quorum="controller.quorum.bootstrap.servers=127.0.0.1:$NODE_CONTROLLER_PORT"; else quorum="controller.quorum.voters=$VOTERS"; fi
  local sasl_listener="" sasl_map=""
  if [[ -n "$KAFKA_SASL_PORT" ]]; then
    sasl_listener=",SASL_PLAINTEXT://127.0.0.1:$(node_sasl_port "$NODE")"
    sasl_map=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  cat >"$NODE_DIR/server.properties" <<EOF
# Generated by scripts/infra/kafka.sh: KRaft node $NODE of $KAFKA_NODES (combined broker + controller).
process.roles=broker,controller
node.id=$NODE
$quorum
listeners=PLAINTEXT://127.0.0.1:$NODE_PORT,CONTROLLER://127.0.0.1:$NODE_CONTROLLER_PORT$sasl_listener
advertised.listeners=PLAINTEXT://127.0.0.1:$NODE_PORT,CONTROLLER://127.0.0.1:$NODE_CONTROLLER_PORT$sasl_listener
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT$sasl_map
log.dirs=$NODE_DIR/kraft-logs

# Topics: created explicitly, 6 partitions unless told otherwise, on every node (up to 3).
num.partitions=6
auto.create.topics.enable=false
default.replication.factor=$REPLICATION
min.insync.replicas=$MIN_ISR

# Internal topics as the others (on one broker RF 1 / min ISR 1, otherwise coordinators never
# come up), few partitions so they are created quickly.
offsets.topic.replication.factor=$REPLICATION
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$REPLICATION
transaction.state.log.min.isr=$MIN_ISR
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=$REPLICATION
share.coordinator.state.topic.min.isr=$MIN_ISR
share.coordinator.state.topic.num.partitions=6

# Test-friendly: no initial rebalance delay, small cleaner buffer (default allocates 128 MiB).
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=8388608
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  if [[ -n "$KAFKA_SASL_PORT" ]]; then
    # One user for every mechanism: PLAIN's from this file, SCRAM's credentials from the storage's
    # format (--add-scram). The password only goes into the data dir.
    cat >>"$NODE_DIR/server.properties" <<EOF

# SASL_PLAINTEXT listener (KAFKA_SASL_PORT): user $SASL_USER.
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$(sasl_password)";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  fi
  cat >"$NODE_DIR/log4j2.properties" <<'EOF'
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
  cat >"$NODE_DIR/tools-log4j2.properties" <<'EOF'
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
# The SASL user's password: made at random once per data dir.
sasl_password() {
  if [[ ! -s "$SASL_PASSWORD_FILE" ]]; then
    mkdir -p "$KAFKA_DATA_DIR"
    (umask 077 && od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$SASL_PASSWORD_FILE")
  fi
  cat "$SASL_PASSWORD_FILE"
}

new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
    [[ "$id" =~ ^[A-Za-z0-9] ]] && { echo "$id"; return; }
  done
}

java_opts() {
  echo "-Xms$KAFKA_HEAP -Xmx$KAFKA_HEAP -server $KAFKA_GC_OPTS -XX:+ExplicitGCInvokesConcurrent" \
    "-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true" \
    "-Dlog4j2.configurationFile=$NODE_DIR/log4j2.properties" \
    "-Dkafka.logs.dir=$NODE_DIR/logs"
}

# --- commands ----------------------------------------------------------------

# Formats the selected node's storage unless it is formatted already (a kept data dir).
format_node() {
  local cluster_id="$1"
  local -a mode=()
  ((KAFKA_NODES == 1)) && mode=(--standalone)
  if [[ -n "$KAFKA_SASL_PORT" ]]; then
    mode+=(--add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$(sasl_password)]" --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$(sasl_password)]")
  fi
  # Format only a fresh log dir: a kept one (KAFKA_KEEP_DATA=1) is reused as is (-g alone
  # would still fail on it, since a new random cluster id does not match the stored one).
  if [[ -f "$NODE_DIR/kraft-logs/meta.properties" ]]; then
    log "reusing formatted storage in $NODE_DIR/kraft-logs"
  elif ! "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$NODE_DIR/log4j2.properties" \
      -cp "$LIBS_DIR/*" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$NODE_DIR/server.properties" "${mode[@]}" -g \
      >"$NODE_DIR/format.log" 2>&1; then
    tail -n 20 "$NODE_DIR/format.log" >&2
    die "formatting storage in $NODE_DIR/kraft-logs failed"
  fi
}

# Starts the selected node's JVM in the background (the last log is kept as kafka.log.1).
launch_node() {
  local -a opts
  read -r -a opts <<<"$(java_opts)"
  rm -f "$PID_FILE"
  [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  log "starting Kafka $KAFKA_VERSION node $NODE on 127.0.0.1:$NODE_PORT (controller 127.0.0.1:$NODE_CONTROLLER_PORT, data $NODE_DIR)"
  # bash writes its own pid, then execs java: the pid file holds the JVM's pid even if
  # setsid has to fork.
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash
  (cd "$NODE_DIR" && exec setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$JAVA" "${opts[@]}" -cp "$LIBS_DIR/*" kafka.Kafka "$NODE_DIR/server.properties" \
    >"$LOG_FILE" 2>&1 </dev/null) &
  NODE_STARTED=$SECONDS
}

# Waits until the selected node is ready (or fails, stopping it).
await_node() {
  local pid start="$NODE_STARTED"
  while :; do
    if grep -q "$READY_LINE" "$LOG_FILE" 2>/dev/null && running_pid >/dev/null \
        && port_in_use "$NODE_PORT"; then
      break
    fi
    if ((SECONDS - start > 2)) && ! running_pid >/dev/null; then
      tail_log "$LOG_FILE"
      die "broker process of node $NODE exited during startup"
    fi
    if ((SECONDS - start >= KAFKA_START_TIMEOUT)); then
      tail_log "$LOG_FILE"
      if pid="$(running_pid)"; then
        log "not ready after ${KAFKA_START_TIMEOUT}s, stopping pid $pid"
        terminate "$pid"
      fi
      die "node $NODE did not become ready within ${KAFKA_START_TIMEOUT}s (log: $LOG_FILE)"
    fi
    sleep 0.2
  done
  log "node $NODE ready in $((SECONDS - start))s (pid $(cat "$PID_FILE")): $(grep -m1 "$READY_LINE" "$LOG_FILE")"
}

all_running() {
  local n
  for ((n = 1; n <= KAFKA_NODES; n++)); do
    select_node "$n"
    running_pid >/dev/null || return 1
  done
}

cmd_start() {
  local n
  if all_running; then
    log "already running, bootstrap $BOOTSTRAP"
    echo "$BOOTSTRAP"
    return 0
  fi
  command -v "$JAVA" >/dev/null || die "java not found (Java 17+ required)"
  for ((n = 1; n <= KAFKA_NODES; n++)); do
    select_node "$n"
    running_pid >/dev/null && die "node $n is running but not all $KAFKA_NODES are: stop first"
    for port in "$NODE_PORT" "$NODE_CONTROLLER_PORT" ${KAFKA_SASL_PORT:+"$(node_sasl_port "$n")"}; do
      port_in_use "$port" && die "port $port on 127.0.0.1 is already in use by another process"
    done
  done
  fetch_jars

  # Leftovers of a crashed or killed broker: start clean unless data is to be kept.
  if [[ "$KAFKA_KEEP_DATA" != 1 && -f "$OWNER_MARKER" ]]; then
    log "removing stale data dir $KAFKA_DATA_DIR"
    rm -rf -- "$KAFKA_DATA_DIR"
  fi
  mkdir -p "$KAFKA_DATA_DIR"
  local cluster_id
  if [[ -f "$KAFKA_DATA_DIR/cluster.id" ]]; then cluster_id="$(cat "$KAFKA_DATA_DIR/cluster.id")"; else cluster_id="$(new_cluster_id)"; echo "$cluster_id" >"$KAFKA_DATA_DIR/cluster.id"; fi
  # Every node is launched before any is awaited: a quorum of several forms only with a majority up.
  for ((n = 1; n <= KAFKA_NODES; n++)); do
    select_node "$n"
    write_config
    format_node "$cluster_id"
    launch_node
  done
  for ((n = 1; n <= KAFKA_NODES; n++)); do
    select_node "$n"
    await_node
  done
  echo "$BOOTSTRAP"
}

# The node number given to kill-node / start-node.
node_arg() {
  [[ "${1:-}" =~ ^[1-9]$ ]] && (($1 <= KAFKA_NODES)) || die "a node number from 1 to $KAFKA_NODES is needed (KAFKA_NODES=$KAFKA_NODES)"
  select_node "$1"
}

cmd_kill_node() {
  node_arg "${1:-}"
  local pid
  pid="$(running_pid)" || die "node $NODE is not running"
  log "killing node $NODE (pid $pid) with SIGKILL"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

cmd_start_node() {
  node_arg "${1:-}"
  local pid
  if pid="$(running_pid)"; then
    log "node $NODE already running (pid $pid)"
    return 0
  fi
  [[ -f "$NODE_DIR/kraft-logs/meta.properties" ]] || die "node $NODE has no formatted storage in $NODE_DIR: use start"
  launch_node
  await_node
}

cmd_stop() {
  local pid n
  for ((n = 1; n <= KAFKA_NODES; n++)); do
    select_node "$n"
    if pid="$(running_pid)"; then
      log "stopping node $n (pid $pid)"
      terminate "$pid"
      if kill -0 "$pid" 2>/dev/null; then die "pid $pid did not exit"; fi
      log "node $n stopped"
    else
      log "node $n not running"
    fi
    rm -f "$PID_FILE"
  done
  log "stopped"
  remove_data_dir
}

cmd_status() {
  local pid n down=0
  for ((n = 1; n <= KAFKA_NODES; n++)); do
    select_node "$n"
    if pid="$(running_pid)"; then
      log "node $n running (pid $pid) on 127.0.0.1:$NODE_PORT, data $NODE_DIR"
    else
      log "node $n not running"
      down=1
    fi
  done
  ((down == 0)) && log "bootstrap $BOOTSTRAP"
  return "$down"
}

cmd_logs() {
  [[ -f "$LOG_FILE" ]] || die "no log at $LOG_FILE"
  if (($#)); then exec tail "$@" "$LOG_FILE"; else exec tail -n 200 "$LOG_FILE"; fi
}

cmd_sasl_credentials() {
  [[ -n "$KAFKA_SASL_PORT" ]] || die "KAFKA_SASL_PORT is not set: the broker has no SASL listener"
  [[ -s "$SASL_PASSWORD_FILE" ]] || die "no SASL password in $KAFKA_DATA_DIR: start first"
  local n list=""
  for ((n = 1; n <= KAFKA_NODES; n++)); do list+="${list:+,}127.0.0.1:$(node_sasl_port $n)"; done
  echo "$list"
  echo "$SASL_USER"
  cat "$SASL_PASSWORD_FILE"
}

cmd_classpath() {
  fetch_jars
  echo "$LIBS_DIR/*"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  logs) shift; select_node 1; cmd_logs "$@" ;;
  classpath) cmd_classpath ;;
  sasl-credentials) cmd_sasl_credentials ;;
  kill-node) cmd_kill_node "${2:-}" ;;
  start-node) cmd_start_node "${2:-}" ;;
  *) echo "usage: $0 start|stop|status|logs [tail args]|classpath|kill-node N|start-node N|sasl-credentials" >&2; exit 2 ;;
esac
