#!/usr/bin/env bash
# The apache/kafka image's start up to the broker's launch, on this machine: its run script's
# steps (configureDefaults, configure, then launch's call of kafka.docker.KafkaDockerWrapper, which
# writes server.properties from the KAFKA_* variables and formats the log dirs). The broker is
# then started by the caller from the server.properties written here, as launch does with
# kafka-server-start.sh.
#   TF_KAFKA_CLASSPATH: the broker's jars   TF_ROOT: the container's root (image paths under it)
# Everything else in the environment is the container's, exactly as compose gives it.
set -o nounset -o errexit
classpath="${TF_KAFKA_CLASSPATH:?}"
root="${TF_ROOT:?}"
unset TF_KAFKA_CLASSPATH TF_ROOT

echo "===> User"
id
echo "===> Setting default values of environment variables if not already set."
if [[ -z "${CLUSTER_ID:-}" ]]; then
  echo 'CLUSTER_ID not set. Setting it to default value: "5L6g3nShT-eMCtK--X86sw"'
  export CLUSTER_ID=5L6g3nShT-eMCtK--X86sw
fi

echo "===> Configuring ..."
if [[ -n "${KAFKA_PROCESS_ROLES:-}" ]]; then
  [[ -n "${CLUSTER_ID:-}" ]] || { echo "CLUSTER_ID environment variable not set"; exit 1; }
  if [[ "$KAFKA_PROCESS_ROLES" == "controller" ]]; then
    if [[ -n "${KAFKA_ADVERTISED_LISTENERS:-}" ]]; then
      echo "KAFKA_ADVERTISED_LISTENERS is not supported on a KRaft controller."
      exit 1
    fi
    unset KAFKA_ADVERTISED_LISTENERS
  fi
fi
if [[ -z "${KAFKA_LISTENERS:-}" && "${KAFKA_PROCESS_ROLES:-}" != controller && -n "${KAFKA_ADVERTISED_LISTENERS:-}" ]]; then
  KAFKA_LISTENERS="$(echo "$KAFKA_ADVERTISED_LISTENERS" | sed -e 's|://[^:]*:|://0.0.0.0:|g')"
  export KAFKA_LISTENERS
fi
[[ -w "$root/opt/kafka/config/" ]] || { echo "$root/opt/kafka/config/ is not writable"; exit 1; }
if [[ "${KAFKA_ADVERTISED_LISTENERS:-}" == *"SSL://"* || "${KAFKA_ADVERTISED_LISTENERS:-}" =~ SASL_.*:// ]]; then
  echo "SSL and SASL listeners are not part of this emulation of the image"
  exit 1
fi

echo "===> Launching ... "
echo "===> Using provided cluster id $CLUSTER_ID ..."
# As launch: a volume formatted by an earlier start is fine ("already formatted").
result=$(java ${KAFKA_HEAP_OPTS:--Xmx256M} -cp "$classpath" kafka.docker.KafkaDockerWrapper setup \
  --default-configs-dir "$root/etc/kafka/docker" \
  --mounted-configs-dir "$root/mnt/shared/config" \
  --final-configs-dir "$root/opt/kafka/config" 2>&1) ||
  echo "$result" | grep -i "already formatted" ||
  { echo "$result" && exit 1; }
echo "$result"
