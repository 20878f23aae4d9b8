#!/usr/bin/env bash
# Run a real, single-node Apache Kafka broker (KRaft combined mode:
# broker + controller in one JVM) on 127.0.0.1, without Docker.
#
# Usage:
#   scripts/kafka.sh start          fetch jars if needed, start, wait until ready;
#                                   prints KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT
#   scripts/kafka.sh stop [--clean] stop the broker (--clean also deletes its state dir)
#   scripts/kafka.sh status         exit 0 if the broker is running, 1 if not
#   scripts/kafka.sh env            print: export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT
#   scripts/kafka.sh fetch          only download the jars into the cache
#
# Typical use:   eval "$(scripts/kafka.sh start | sed 's/^/export /')"
#           or:  scripts/kafka.sh start && eval "$(scripts/kafka.sh env)"
#
# Needs: java 17+ (Kafka 4.x), mvn (only until the jars are cached), python3.
# Only the KAFKA_BOOTSTRAP_SERVERS line goes to stdout; progress goes to stderr.
#
# Files:
#   jars       <repo>/.cache/kafka/libs       (AXISWATCH_KAFKA_CACHE=<dir> -> <dir>/libs)
#   maven repo ~/.m2/repository               (AXISWATCH_M2_REPO overrides)
#   state      <repo>/var/kafka               ($AXISWATCH_VAR_DIR/kafka if that is set)
#              server.properties, log4j2.xml, data/ (log.dirs), logs/server.log,
#              kafka.out (JVM stdout/stderr), kafka.pid, bootstrap, ports, cluster_id
# Environment knobs:
#   AXISWATCH_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 90)
#   AXISWATCH_KAFKA_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 20)
#   AXISWATCH_KAFKA_HEAP           JVM heap options (default "-Xms256m -Xmx512m")
#   AXISWATCH_KAFKA_LOG_LEVEL      log level of logs/server.log (default INFO)
#   JAVA_HOME                      if set, $JAVA_HOME/bin/java is used
set -euo pipefail

NAME=kafka.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
init_state kafka
ENV_VAR=KAFKA_BOOTSTRAP_SERVERS
ENV_FILE=bootstrap
POM="$SCRIPT_DIR/kafka/pom.xml"
CACHE_DIR="${AXISWATCH_KAFKA_CACHE:-$REPO_ROOT/.cache/kafka}"
LIBS="$CACHE_DIR/libs"
PIDFILE="$STATE/kafka.pid"
START_TIMEOUT="${AXISWATCH_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${AXISWATCH_KAFKA_STOP_TIMEOUT:-20}"
HEAP_OPTS="${AXISWATCH_KAFKA_HEAP:--Xms256m -Xmx512m}"
LOG_LEVEL="${AXISWATCH_KAFKA_LOG_LEVEL:-INFO}"
if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA="java"
fi

# --- process helpers --------------------------------------------------------

# Pid of our broker if it is running (a JVM running kafka.Kafka), else nothing (and exit status 1).
server_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && runs "$pid" 'kafka\.Kafka' || return 1
    echo "$pid"
}

server_where() { cat "$STATE/bootstrap" 2>/dev/null || echo '?'; }

# stop_pid PID: SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL.
stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        alive "$pid" || return 0
        sleep 0.2
    done
    log "broker (pid $pid) still running after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    log "warning: pid $pid did not go away"
}

show_logs() {
    local f
    for f in "$STATE/kafka.out" "$STATE/logs/server.log" "$STATE/format.log"; do
        if [[ -s "$f" ]]; then
            echo "----- tail -n 40 $f -----" >&2
            tail -n 40 "$f" >&2 || true
        fi
    done
}

# --- jars ---------------------------------------------------------------------

check_java() {
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found (Kafka 4.x needs Java 17+; apt-get install openjdk-17-jre-headless)"
    local v major
    v="$("$JAVA" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
    major="${v%%.*}"
    [[ "$major" == "1" ]] && major="$(echo "$v" | cut -d. -f2)"
    if ! [[ "$major" =~ ^[0-9]+$ ]] || ((major < 17)); then
        die "Kafka 4.x needs Java 17+, found '$v' ($JAVA)"
    fi
}

jars_stamp() { sha256sum "$POM" | awk '{print $1}'; }

jars_ready() {
    [[ -f "$LIBS/.stamp" && "$(cat "$LIBS/.stamp")" == "$(jars_stamp)" ]]
}

fetch_jars() {
    jars_ready && return 0
    mkdir -p "$CACHE_DIR"
    # Serialise concurrent fetches (e.g. two test runs starting at once).
    exec 8>"$CACHE_DIR/.fetch.lock"
    flock 8
    if ! jars_ready; then
        command -v mvn >/dev/null 2>&1 || die "mvn not found and Kafka jars are not cached in $LIBS (apt-get install maven)"
        local tmp m2args=()
        [[ -n "${AXISWATCH_M2_REPO:-}" ]] && m2args=("-Dmaven.repo.local=$AXISWATCH_M2_REPO")
        tmp="$(mktemp -d "$CACHE_DIR/libs.tmp.XXXXXX")"
        log "fetching Kafka jars with Maven into $LIBS ..."
        if ! mvn -B -q -f "$POM" "${m2args[@]}" dependency:copy-dependencies \
                -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.mvn.log" 2>&1; then
            cat "$tmp.mvn.log" >&2
            rm -rf "$tmp" "$tmp.mvn.log"
            die "Maven could not fetch the Kafka jars (see above)"
        fi
        rm -f "$tmp.mvn.log"
        ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "Maven ran but kafka_2.13 jar is missing"; }
        jars_stamp >"$tmp/.stamp"
        rm -rf "$LIBS.old"
        [[ -d "$LIBS" ]] && mv "$LIBS" "$LIBS.old"
        mv "$tmp" "$LIBS"
        rm -rf "$LIBS.old"
        local jars=("$LIBS"/*.jar) kjar=("$LIBS"/kafka_2.13-*.jar)
        log "jars ready: ${#jars[@]} jars ($(basename "${kjar[0]}"))"
    fi
    flock -u 8
    exec 8>&-
}

# --- config -------------------------------------------------------------------

write_config() {
    local port="$1" cport="$2"
    mkdir -p "$STATE/data" "$STATE/logs"
    cat >"$STATE/server.properties" <<EOF
# Written by scripts/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${cport}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${STATE}/data

# Single node: every replication factor / ISR is 1.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
EOF
    cat >"$STATE/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/kafka.sh. The broker logs to \${sys:kafka.logs.dir}/server.log only. -->
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="server" fileName="\${sys:kafka.logs.dir}/server.log"
                 filePattern="\${sys:kafka.logs.dir}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="20 MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="${LOG_LEVEL}"><AppenderRef ref="server"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="WARN"/>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
  </Loggers>
</Configuration>
EOF
}

java_opts() {
    # shellcheck disable=SC2206
    local heap=($HEAP_OPTS)
    JAVA_OPTS=("${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -Djava.awt.headless=true
        "-Dkafka.logs.dir=$STATE/logs"
        "-Dlog4j2.configurationFile=$STATE/log4j2.xml"
        -cp "$LIBS/*")
}

format_storage() {
    [[ -f "$STATE/data/meta.properties" ]] && return 0
    local cid
    if [[ -s "$STATE/cluster_id" ]]; then
        cid="$(cat "$STATE/cluster_id")"
    else
        # Same format as `kafka-storage.sh random-uuid`: 16 random bytes, base64url, no padding; and, like
        # Kafka's own Uuid.randomUuid, never starting with "-", which the storage tool would read as an option.
        cid="$(python3 -c 'import base64,uuid
while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"): pass
print(cid)')"
        echo "$cid" >"$STATE/cluster_id"
    fi
    log "formatting storage (cluster id $cid)"
    java_opts
    if ! "$JAVA" "${JAVA_OPTS[@]}" kafka.tools.StorageTool format \
            -t "$cid" -c "$STATE/server.properties" --ignore-formatted \
            >"$STATE/format.log" 2>&1 </dev/null; then
        show_logs
        die "kafka storage format failed"
    fi
}

# --- readiness ----------------------------------------------------------------

# wait_ready PORT PID TIMEOUT: poll the broker with a real Kafka Metadata (v4)
# request until it lists at least one live broker. Exit 0 ready, 1 timeout, 2 process died.
wait_ready() {
    python3 - "$@" <<'PY'
import os, socket, struct, sys, time

port, pid, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf

def metadata_brokers():
    client_id = b"axiswatch-ready"
    # Request header v1 + Metadata v4 body (topics: empty array, allow_auto_topic_creation: false)
    req = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id + struct.pack(">ib", 0, 0)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.settimeout(5)
        s.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        body = recv_exact(s, size)
    corr, _throttle, nbrokers = struct.unpack(">iii", body[:12])
    if corr != 7:
        raise ValueError("bad correlation id")
    return nbrokers

deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    if not alive(pid):
        sys.exit(2)
    try:
        if metadata_brokers() >= 1:
            sys.exit(0)
    except (OSError, ValueError, struct.error):
        pass
    time.sleep(0.5)
sys.exit(1)
PY
}

# --- commands -----------------------------------------------------------------

cmd_start() {
    lock_state
    local pid
    if pid="$(server_pid)"; then
        log "already running (pid $pid), state $STATE"
        print_env ""
        return 0
    fi
    rm -f "$PIDFILE" "$STATE/bootstrap"
    check_java
    command -v python3 >/dev/null 2>&1 || die "python3 not found"
    fetch_jars

    # Reuse the previous ports when they are still free (stable address across
    # stop/start), otherwise pick new free ones.
    local port="" cport=""
    if [[ -s "$STATE/ports" ]]; then
        read -r port cport <"$STATE/ports" || true
        if ! [[ "$port" =~ ^[0-9]+$ && "$cport" =~ ^[0-9]+$ ]] || ! port_is_free "$port" || ! port_is_free "$cport"; then
            port="" cport=""
        fi
    fi
    if [[ -z "$port" ]]; then
        port="$(free_port)"
        cport="$(free_port)"
        while [[ "$cport" == "$port" ]]; do cport="$(free_port)"; done
    fi
    echo "$port $cport" >"$STATE/ports"

    write_config "$port" "$cport"
    format_storage

    log "starting broker on 127.0.0.1:$port (controller 127.0.0.1:$cport), state $STATE"
    java_opts
    : >"$STATE/kafka.out"
    # setsid: own session, so a Ctrl-C aimed at the caller does not hit the JVM
    # directly; the wrapper writes the JVM's own pid (exec keeps it).
    # shellcheck disable=SC2016  # $$ and $1 are for the inner bash
    nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-launch "$PIDFILE" \
        "$JAVA" "${JAVA_OPTS[@]}" kafka.Kafka "$STATE/server.properties" \
        >>"$STATE/kafka.out" 2>&1 </dev/null 9>&- &
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -s "$PIDFILE" ]] && break
        sleep 0.05
    done
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ -n "$pid" ]] || { show_logs; die "broker did not start"; }

    local rc=0
    wait_ready "$port" "$pid" "$START_TIMEOUT" || rc=$?
    if ((rc != 0)); then
        show_logs
        if ((rc == 2)); then
            rm -f "$PIDFILE"
            die "broker process exited during startup (logs above)"
        fi
        log "broker not ready after ${START_TIMEOUT}s, stopping it"
        stop_pid "$pid"
        rm -f "$PIDFILE"
        die "broker not ready after ${START_TIMEOUT}s (logs above)"
    fi
    echo "127.0.0.1:$port" >"$STATE/bootstrap"
    log "ready (pid $pid)"
    print_env ""
}

stop_server() {
    log "stopping broker (pid $1)"
    stop_pid "$1"
    rm -f "$PIDFILE" "$STATE/bootstrap"
}

remove_state() {
    rm -rf "$STATE"
    log "removed $STATE"
}

cmd_fetch() {
    check_java
    fetch_jars
}

dispatch "$@"
