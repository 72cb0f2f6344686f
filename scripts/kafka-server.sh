#!/usr/bin/env bash
# A throw-away Apache Kafka broker (KRaft: one combined broker + controller, no ZooKeeper) on
# 127.0.0.1, for the Kafka connector tests.
#
#   scripts/kafka-server.sh start DIR [PORT]   # prints the bootstrap address (127.0.0.1:PORT)
#   scripts/kafka-server.sh stop DIR
#
# The Apache Kafka jars (org.apache.kafka:kafka_2.13 $KAFKA_VERSION and its runtime
# dependencies) come from Maven Central through `mvn dependency:copy-dependencies` on first use,
# into build/kafka-$KAFKA_VERSION/libs (override with KAFKA_HOME). Needs Java 17 and Maven.
# DIR holds the configuration, the KRaft log directory, the pid file and the server log; the
# first start in a DIR formats its log directory, a later one (a restart) keeps the data.
# stop kills only the pid recorded in DIR.
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-4.1.0}
REPO=$(cd "$(dirname "$0")/.." && pwd)
KAFKA_HOME=${KAFKA_HOME:-$REPO/build/kafka-$KAFKA_VERSION}

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_jars() {
  [[ -f $KAFKA_HOME/libs/kafka_2.13-$KAFKA_VERSION.jar && -f $KAFKA_HOME/libs/log4j-slf4j-impl-2.24.3.jar ]] && return 0
  command -v mvn >/dev/null || { echo "kafka-server: mvn (Maven) is needed to fetch the Kafka jars" >&2; exit 1; }
  command -v java >/dev/null || { echo "kafka-server: java (17+) is needed to run Kafka" >&2; exit 1; }
  echo "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its dependencies into $KAFKA_HOME ..." >&2
  mkdir -p "$KAFKA_HOME"
  cat >"$KAFKA_HOME/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tidemark</groupId><artifactId>kafka-server</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$KAFKA_HOME/libs.tmp"
  (cd "$KAFKA_HOME" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$KAFKA_HOME/libs.tmp" >&2)
  mv "$KAFKA_HOME/libs.tmp" "$KAFKA_HOME/libs"
}

# Runs a Kafka main class with the jars on the class path.
kafka_java() {
  local cls=$1; shift
  java -Xms256m -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DIR/log4j2.properties" -cp "$KAFKA_HOME/libs/*" "$cls" "$@"
}

start() {
  local port pid cid
  DIR=$(realpath -m "$1"); port=${2:-9092}
  mkdir -p "$DIR"
  if [[ -f $DIR/kafka.pid ]] && kill -0 "$(cat "$DIR/kafka.pid")" 2>/dev/null; then
    echo "kafka already running from $DIR (pid $(cat "$DIR/kafka.pid"))" >&2; exit 1
  fi
  if port_open "$port"; then
    echo "port $port on 127.0.0.1 is already in use; pick another: $0 start DIR PORT" >&2; exit 1
  fi
  local cport=$((port + 1))
  if port_open "$cport"; then
    echo "controller port $cport on 127.0.0.1 is already in use; pick another PORT" >&2; exit 1
  fi
  install_jars
  cat >"$DIR/log4j2.properties" <<'EOF'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = info
EOF
  cat >"$DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/logs
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.flush.interval.messages=1
transaction.max.timeout.ms=900000
EOF
  if [[ ! -f $DIR/logs/meta.properties ]]; then  # a new DIR: format it (a restart keeps the data)
  cid=$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  kafka_java kafka.tools.StorageTool format -t "$cid" -c "$DIR/server.properties" --standalone >"$DIR/format.log" 2>&1 ||
    kafka_java kafka.tools.StorageTool format -t "$cid" -c "$DIR/server.properties" >"$DIR/format.log" 2>&1 || {
      echo "kafka storage format failed; log $DIR/format.log:" >&2; cat "$DIR/format.log" >&2; exit 1; }
  fi
  nohup java -Xms256m -Xmx768m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DIR/log4j2.properties" -Dtidemark.kafka.dir="$DIR" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$DIR/server.properties" >"$DIR/kafka.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$DIR/kafka.pid"
  echo "$port" >"$DIR/kafka.port"
  for _ in $(seq 1 600); do  # up to 60 s; usually 5-10 s on a busy machine
    if port_open "$port" && grep -q "Kafka Server started" "$DIR/kafka.log" 2>/dev/null; then
      echo "127.0.0.1:$port"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "kafka exited during start-up; log $DIR/kafka.log:" >&2; tail -50 "$DIR/kafka.log" >&2
      rm -f "$DIR/kafka.pid"; exit 1
    fi
    sleep 0.1
  done
  echo "kafka did not answer on port $port within 60 s; log: $DIR/kafka.log" >&2
  kill "$pid" 2>/dev/null || true
  rm -f "$DIR/kafka.pid"; exit 1
}

stop() {
  local pid
  DIR=$(realpath -m "$1")
  [[ -f $DIR/kafka.pid ]] || { echo "no kafka pid file in $DIR" >&2; return 0; }
  pid=$(cat "$DIR/kafka.pid")
  # Only kill the pid if it is still our broker (pids get reused): its command line names DIR.
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-Dtidemark.kafka.dir=$DIR "; then
    kill "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/kafka.pid"
}

case "${1:-}" in
  start) [[ $# -ge 2 ]] || usage; start "$2" "${3:-}" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
