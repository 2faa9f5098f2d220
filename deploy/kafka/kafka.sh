#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker+controller in one
# JVM) on 127.0.0.1, for development and tests. No Docker: the jars come
# from Maven Central on first use and are cached; later runs stay offline.
#
#   kafka.sh fetch
#   kafka.sh start  [--dir DIR] [--port PORT]
#   kafka.sh stop   [--dir DIR]
#   kafka.sh status [--dir DIR]
#   kafka.sh topic NAME PARTITIONS [--dir DIR] [--port PORT]
#
# See README.md beside this file.
set -euo pipefail

KAFKA_VERSION="${PIPEWATCH_KAFKA_VERSION:-4.1.2}"
LOG4J_VERSION="2.25.3" # the log4j2 that kafka-server itself depends on
KAFKA_HOME="${PIPEWATCH_KAFKA_HOME:-${HOME}/.cache/pipewatch/kafka-${KAFKA_VERSION}}"
LIBS="${KAFKA_HOME}/libs"
START_TIMEOUT="${PIPEWATCH_KAFKA_START_TIMEOUT:-90}"
BROKER_HEAP="${PIPEWATCH_KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
TOOL_JVM_OPTS=(-Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true)

die() { echo "kafka.sh: $*" >&2; exit 1; }
log() { echo "kafka.sh: $*" >&2; }

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------- fetch ---

fetch() {
  [ -f "${LIBS}/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn (Maven) is needed to fetch the Kafka jars"
  mkdir -p "${KAFKA_HOME}"
  # Concurrent first uses (parallel tests) download once.
  exec 8>"${KAFKA_HOME}/.fetch.lock"
  flock 8
  if [ ! -f "${LIBS}/.complete" ]; then
    log "fetching Kafka ${KAFKA_VERSION} jars into ${LIBS}"
    cat >"${KAFKA_HOME}/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>pipewatch</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>${KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <!-- Kafka logs through slf4j 1.7 and ships log4j2 as its backend. -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>${LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
    rm -rf "${LIBS}.tmp"
    # Maven 3.8 prints colour resets even in batch mode: strip them.
    mvn -B -q -Dstyle.color=never -f "${KAFKA_HOME}/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="${LIBS}.tmp" 2>&1 \
      | sed 's/\x1b\[[0-9;]*m//g' >&2 \
      || die "mvn could not fetch org.apache.kafka:kafka_2.13:${KAFKA_VERSION}"
    rm -rf "${LIBS}"
    mv "${LIBS}.tmp" "${LIBS}"
    touch "${LIBS}/.complete"
    log "fetched $(find "${LIBS}" -name '*.jar' | wc -l) jars"
  fi
  flock -u 8
  exec 8>&-
}

write_log4j_configs() {
  # Written to a temporary name and renamed, so a parallel run never reads
  # half a file.
  # Broker: INFO to stdout (redirected to DIR/kafka.log), quiet request logs.
  cat >"${KAFKA_HOME}/log4j2-broker.properties.$$" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.network.name = kafka.network.RequestChannel$
logger.network.level = WARN
EOF
  # Tools: warnings only, on stderr.
  cat >"${KAFKA_HOME}/log4j2-tools.properties.$$" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
  mv -f "${KAFKA_HOME}/log4j2-broker.properties.$$" "${KAFKA_HOME}/log4j2-broker.properties"
  mv -f "${KAFKA_HOME}/log4j2-tools.properties.$$" "${KAFKA_HOME}/log4j2-tools.properties"
}

ensure_jars() {
  fetch
  command -v java >/dev/null || die "java (17 or newer) is needed"
  if [ ! -f "${KAFKA_HOME}/log4j2-tools.properties" ] \
    || [ ! -f "${KAFKA_HOME}/log4j2-broker.properties" ]; then
    write_log4j_configs
  fi
}

run_tool() { # main-class args...
  local main="$1"
  shift
  java "${TOOL_JVM_OPTS[@]}" \
    -Dlog4j2.configurationFile="${KAFKA_HOME}/log4j2-tools.properties" \
    -cp "${LIBS}/*" "${main}" "$@"
}

# ------------------------------------------------------------- helpers ---

port_open() { # port -> 0 if something listens on 127.0.0.1:port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

broker_pid() { # prints the pid of the broker of DIR if it runs
  local pidfile="${DIR}/kafka.pid" pid
  [ -f "${pidfile}" ] || return 1
  pid="$(cat "${pidfile}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  kill -0 "${pid}" 2>/dev/null || return 1
  # Guard against a recycled pid: it must be our kafka.Kafka with our config.
  tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null \
    | grep -q "kafka.Kafka ${DIR}/server.properties" || return 1
  echo "${pid}"
}

running_port() {
  if [ -f "${DIR}/kafka.port" ]; then cat "${DIR}/kafka.port"; else echo "${PORT}"; fi
}

random_cluster_id() {
  # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding; like
  # Uuid.randomUuid(), avoid a leading '-' (it reads as a CLI flag).
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [ "${id:0:1}" != "-" ] && [ "${id}" != "AAAAAAAAAAAAAAAAAAAAAA" ] && break
  done
  echo "${id}"
}

pick_controller_port() {
  local p="${PIPEWATCH_KAFKA_CONTROLLER_PORT:-}"
  if [ -n "${p}" ]; then echo "${p}"; return; fi
  p=$((PORT + 1))
  while [ "${p}" -lt 65535 ]; do
    if [ "${p}" != "${PORT}" ] && ! port_open "${p}"; then echo "${p}"; return; fi
    p=$((p + 1))
  done
  die "no free port for the controller above ${PORT}"
}

# ------------------------------------------------------------ commands ---

cmd_start() {
  mkdir -p "${DIR}"
  local pid
  if pid="$(broker_pid)"; then
    echo "bootstrap=127.0.0.1:$(running_port)"
    return 0
  fi
  ensure_jars
  if port_open "${PORT}"; then
    die "port ${PORT} is already in use on 127.0.0.1 (another broker? use --port)"
  fi
  local cport
  cport="$(pick_controller_port)"

  mkdir -p "${DIR}/data"
  cat >"${DIR}/server.properties" <<EOF
# Written by deploy/kafka/kafka.sh on each start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${cport}
listeners=PLAINTEXT://127.0.0.1:${PORT},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${PORT}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${DIR}/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.retention.hours=168
EOF

  if [ ! -f "${DIR}/data/meta.properties" ]; then
    local cid
    cid="$(random_cluster_id)"
    run_tool kafka.tools.StorageTool format --ignore-formatted \
      --cluster-id "${cid}" --config "${DIR}/server.properties" \
      >"${DIR}/format.log" 2>&1 \
      || { cat "${DIR}/format.log" >&2; die "formatting the storage in ${DIR}/data failed"; }
  fi

  # Keep the previous run's log beside the new one; readiness is read from
  # the new one only.
  [ -f "${DIR}/kafka.log" ] && mv -f "${DIR}/kafka.log" "${DIR}/kafka.log.1"
  : >"${DIR}/kafka.log"

  # New session, no terminal, no inherited stdout: the broker outlives this
  # script and does not hold a caller's pipe open.
  # shellcheck disable=SC2086 # BROKER_HEAP is a list of JVM flags
  setsid java ${BROKER_HEAP} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="${KAFKA_HOME}/log4j2-broker.properties" \
    -Dkafka.logs.dir="${DIR}" \
    -cp "${LIBS}/*" kafka.Kafka "${DIR}/server.properties" \
    </dev/null >>"${DIR}/kafka.log" 2>&1 &
  pid=$!
  echo "${pid}" >"${DIR}/kafka.pid"
  echo "${PORT}" >"${DIR}/kafka.port"

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "${pid}" 2>/dev/null; then
      log "the broker exited during start-up; last lines of ${DIR}/kafka.log:"
      tail -n 40 "${DIR}/kafka.log" >&2
      rm -f "${DIR}/kafka.pid"
      exit 1
    fi
    if port_open "${PORT}" && grep -q "Kafka Server started" "${DIR}/kafka.log" \
      && timeout 30 java "${TOOL_JVM_OPTS[@]}" \
        -Dlog4j2.configurationFile="${KAFKA_HOME}/log4j2-tools.properties" \
        -cp "${LIBS}/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "127.0.0.1:${PORT}" --list >/dev/null 2>"${DIR}/ready.log"; then
      break
    fi
    if [ "${SECONDS}" -ge "${deadline}" ]; then
      log "the broker did not answer within ${START_TIMEOUT}s; last lines of ${DIR}/kafka.log:"
      tail -n 40 "${DIR}/kafka.log" >&2
      [ -s "${DIR}/ready.log" ] && tail -n 5 "${DIR}/ready.log" >&2
      stop_pid "${pid}"
      exit 1
    fi
    sleep 0.5
  done
  echo "bootstrap=127.0.0.1:${PORT}"
}

stop_pid() {
  local pid="$1" i
  kill -TERM "${pid}" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "${pid}" 2>/dev/null; then
    log "broker ${pid} still up after 30s; killing it"
    kill -KILL "${pid}" 2>/dev/null || true
    while kill -0 "${pid}" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "${DIR}/kafka.pid" "${DIR}/kafka.port"
}

cmd_stop() {
  local pid
  if pid="$(broker_pid)"; then
    stop_pid "${pid}"
    echo "stopped"
  else
    rm -f "${DIR}/kafka.pid"
    echo "not running"
  fi
}

cmd_status() {
  local pid
  if pid="$(broker_pid)"; then
    echo "running pid=${pid} bootstrap=127.0.0.1:$(running_port) dir=${DIR}"
  else
    echo "stopped dir=${DIR}"
    return 3
  fi
}

cmd_topic() {
  local name="$1" partitions="$2"
  [[ "${partitions}" =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive number"
  ensure_jars
  local port="${PORT}"
  if [ "${PORT_SET}" = 0 ] && broker_pid >/dev/null; then port="$(running_port)"; fi
  port_open "${port}" || die "no broker listens on 127.0.0.1:${port} (run: kafka.sh start)"
  run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:${port}" \
    --create --if-not-exists --topic "${name}" \
    --partitions "${partitions}" --replication-factor 1
}

# ---------------------------------------------------------------- main ---

[ $# -ge 1 ] || usage
CMD="$1"
shift
DIR="${PIPEWATCH_KAFKA_DIR:-./target/kafka}"
PORT="${PIPEWATCH_KAFKA_PORT:-19092}"
PORT_SET=0
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) [ $# -ge 2 ] || usage; DIR="$2"; shift 2 ;;
    --dir=*) DIR="${1#--dir=}"; shift ;;
    --port) [ $# -ge 2 ] || usage; PORT="$2"; PORT_SET=1; shift 2 ;;
    --port=*) PORT="${1#--port=}"; PORT_SET=1; shift ;;
    -h | --help) usage ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ "${PORT}" =~ ^[0-9]+$ ]] || die "PORT must be a number"
DIR="$(realpath -m "${DIR}")"

case "${CMD}" in
  fetch) [ ${#ARGS[@]} -eq 0 ] || usage; ensure_jars; echo "jars=${LIBS}" ;;
  start) [ ${#ARGS[@]} -eq 0 ] || usage; cmd_start ;;
  stop) [ ${#ARGS[@]} -eq 0 ] || usage; cmd_stop ;;
  status) [ ${#ARGS[@]} -eq 0 ] || usage; cmd_status ;;
  topic) [ ${#ARGS[@]} -eq 2 ] || usage; cmd_topic "${ARGS[0]}" "${ARGS[1]}" ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
