# shellcheck shell=bash disable=SC2034
# Pinned versions of the local infrastructure, sourced by scripts/infra/*.sh.
# Plain KEY=VALUE lines only, so the file can also serve as an env file.

# Apache Kafka broker (Maven Central org.apache.kafka:kafka_2.13), newest 4.1.x patch release.
KAFKA_VERSION=4.1.2
# log4j-core version that kafka-server $KAFKA_VERSION depends on; the slf4j binding
# org.apache.logging.log4j:log4j-slf4j-impl must use the same version.
LOG4J_VERSION=2.25.3
# InfluxDB, the version docker-compose runs (influxdb:1.11.8), built once from its Go module
# (github.com/influxdata/influxdb); Debian's influxdb package (1.6.x) is the fallback.
INFLUXDB_VERSION=1.11.8
