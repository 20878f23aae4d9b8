#!/usr/bin/env bash
# Run real Apache Kafka on 127.0.0.1 without Docker: one node, or a cluster of several (KRaft combined
# mode: each node is a broker and a controller in one JVM).
#
# Usage:
#   scripts/kafka.sh start          fetch jars if needed, start every node not running, wait until ready;
#                                   prints KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT[,127.0.0.1:PORT...]
#                                   (also restarts a node of a cluster that was killed, at its old ports)
#   scripts/kafka.sh stop [--clean] stop every node (--clean also deletes the state dir)
#   scripts/kafka.sh status         exit 0 if a node is running, 1 if none
#   scripts/kafka.sh env            print: export KAFKA_BOOTSTRAP_SERVERS=...
#   scripts/kafka.sh pid N          print the pid of node N (1, 2, ...) if it runs (tests kill one)
#   scripts/kafka.sh fetch          only download the jars into the cache
#
# Typical use:   eval "$(scripts/kafka.sh start | sed 's/^/export /')"
#           or:  scripts/kafka.sh start && eval "$(scripts/kafka.sh env)"
# Production layout (docs/kafka.md):  AXISWATCH_KAFKA_BROKERS=3 scripts/kafka.sh start
#   3 nodes, each broker + controller: a 3-voter quorum and topics at replication factor 3 with
#   min.insync.replicas=2, so with acks=all (the producer's) one node can be lost without losing a write.
#
# Needs: java 17+ (Kafka 4.x), mvn (only until the jars are cached), python3.
# Only the KAFKA_BOOTSTRAP_SERVERS line goes to stdout; progress goes to stderr.
#
# Files:
#   jars       <repo>/.cache/kafka/libs       (AXISWATCH_KAFKA_CACHE=<dir> -> <dir>/libs)
#   maven repo ~/.m2/repository               (AXISWATCH_M2_REPO overrides)
#   state      <repo>/var/kafka               ($AXISWATCH_VAR_DIR/kafka if that is set):
#              brokers (the cluster's size), cluster_id, ports ("node port controller-port" lines), bootstrap,
#              node-N/ per node: server.properties (mode 600), log4j2.xml, data/ (log.dirs),
#              logs/server.log, kafka.out (JVM stdout/stderr), kafka.pid, format.log
# Environment knobs:
#   AXISWATCH_KAFKA_BROKERS        nodes of a new cluster (default 1); an existing state keeps its size
#                                  (stop --clean to change it). With N >= 3: replication factor 3 and
#                                  min.insync.replicas 2 for every topic (internal ones too); N = 2 gets 2 and 1.
#   AXISWATCH_KAFKA_SECURITY       PLAINTEXT (default) or SASL_SSL: the client and inter-broker listener is
#                                  SASL_SSL (SCRAM) with the certificate below; the controller listener stays
#                                  PLAINTEXT on 127.0.0.1. Give the same knobs on every start.
#   AXISWATCH_KAFKA_SSL_CERTFILE   SASL_SSL: PEM certificate (chain) of the nodes, valid for 127.0.0.1
#   AXISWATCH_KAFKA_SSL_KEYFILE    SASL_SSL: its unencrypted PKCS#8 PEM private key
#   AXISWATCH_KAFKA_SSL_CAFILE     SASL_SSL: PEM CA that signs it (the nodes trust it as clients of each other)
#   AXISWATCH_KAFKA_SASL_MECHANISM SASL_SSL: SCRAM-SHA-512 (default) or SCRAM-SHA-256
#   AXISWATCH_KAFKA_SASL_USERNAME  SASL_SSL: the SCRAM user, created when the storage is formatted; the nodes
#   AXISWATCH_KAFKA_SASL_PASSWORD_FILE  use it too. The password (letters, digits, . _ ~ -) is read from the file.
#   AXISWATCH_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 90)
#   AXISWATCH_KAFKA_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 20)
#   AXISWATCH_KAFKA_HEAP           JVM heap options of each node (default "-Xms256m -Xmx512m")
#   AXISWATCH_KAFKA_LOG_LEVEL      log level of logs/server.log (default INFO)
#   JAVA_HOME                      if set, $JAVA_HOME/bin/java is used
set -euo pipefail

NAME=kafka.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
init_state kafka
ENV_VAR=KAFKA_BOOTSTRAP_SERVERS
ENV_FILE=bootstrap
TAKES_ARGS="stop pid"
POM="$SCRIPT_DIR/kafka/pom.xml"
CACHE_DIR="${AXISWATCH_KAFKA_CACHE:-$REPO_ROOT/.cache/kafka}"
LIBS="$CACHE_DIR/libs"
START_TIMEOUT="${AXISWATCH_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${AXISWATCH_KAFKA_STOP_TIMEOUT:-20}"
HEAP_OPTS="${AXISWATCH_KAFKA_HEAP:--Xms256m -Xmx512m}"
LOG_LEVEL="${AXISWATCH_KAFKA_LOG_LEVEL:-INFO}"
SECURITY="${AXISWATCH_KAFKA_SECURITY:-PLAINTEXT}"
SASL_MECHANISM="${AXISWATCH_KAFKA_SASL_MECHANISM:-SCRAM-SHA-512}"
if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA="java"
fi

# --- the cluster's shape ----------------------------------------------------------

# Nodes of this state: fixed when it is first started (a KRaft quorum's voters are not changed by
# restarting with another number), else AXISWATCH_KAFKA_BROKERS.
cluster_size() {
    local n
    if [[ -s "$STATE/brokers" ]]; then
        n="$(cat "$STATE/brokers")"
    else
        n="${AXISWATCH_KAFKA_BROKERS:-1}"
    fi
    [[ "$n" =~ ^[1-9]$ ]] || die "AXISWATCH_KAFKA_BROKERS must be 1 to 9, got '$n'"
    echo "$n"
}

# start refuses to silently ignore an AXISWATCH_KAFKA_BROKERS the existing state cannot honour.
check_size() {
    local n="$1"
    if [[ -n "${AXISWATCH_KAFKA_BROKERS:-}" && "$AXISWATCH_KAFKA_BROKERS" != "$n" ]]; then
        die "the state in $STATE is a $n-node cluster; for AXISWATCH_KAFKA_BROKERS=$AXISWATCH_KAFKA_BROKERS run stop --clean first"
    fi
}

node_dir() { echo "$STATE/node-$1"; }

# node_port N FIELD: node N's client port (FIELD 2) or controller port (FIELD 3), from $STATE/ports.
node_port() { awk -v n="$1" -v f="$2" '$1 == n {print $f}' "$STATE/ports"; }

# Pid of node N if it runs (a JVM running kafka.Kafka), else nothing and exit status 1.
node_pid() {
    local pidfile pid
    pidfile="$(node_dir "$1")/kafka.pid"
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && runs "$pid" 'kafka\.Kafka' || return 1
    echo "$pid"
}

# Pids of the running nodes, on one line; exit status 1 when none runs.
server_pid() {
    local node pid pids=()
    [[ -d "$STATE" ]] || return 1
    for node in $(seq 1 "$(cluster_size)"); do
        pid="$(node_pid "$node")" && pids+=("$pid")
    done
    ((${#pids[@]} > 0)) || return 1
    echo "${pids[*]}"
}

server_where() { cat "$STATE/bootstrap" 2>/dev/null || echo '?'; }

# Replication of every topic: 3 copies, 2 of them in sync before a write counts, once there are 3 nodes.
replication_factor() { echo $(($1 < 3 ? $1 : 3)); }
min_insync() {
    local copies
    copies="$(replication_factor "$1")"
    echo $((copies > 1 ? copies - 1 : 1))
}

# --- process helpers --------------------------------------------------------

# any_alive PID...: exit 0 while one of them is alive.
any_alive() {
    local pid
    for pid in "$@"; do alive "$pid" && return 0; done
    return 1
}

# stop_pids PID...: SIGTERM to all at once (a node shutting down waits for its controllers, and those are
# its peers), wait up to STOP_TIMEOUT seconds, then SIGKILL what is left.
stop_pids() {
    local pid i
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        any_alive "$@" || return 0
        sleep 0.2
    done
    for pid in "$@"; do
        if alive "$pid"; then
            log "node (pid $pid) still running after ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < 50; i++)); do
        any_alive "$@" || return 0
        sleep 0.1
    done
    log "warning: not every one of pids $* went away"
}

show_logs() {
    local f
    for f in "$1/kafka.out" "$1/logs/server.log" "$1/format.log"; do
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

check_security() {
    case "$SECURITY" in
        PLAINTEXT) return 0 ;;
        SASL_SSL) ;;
        *) die "AXISWATCH_KAFKA_SECURITY must be PLAINTEXT or SASL_SSL, got '$SECURITY'" ;;
    esac
    [[ "$SASL_MECHANISM" =~ ^SCRAM-SHA-(256|512)$ ]] \
        || die "AXISWATCH_KAFKA_SASL_MECHANISM must be SCRAM-SHA-256 or SCRAM-SHA-512"
    local var
    for var in AXISWATCH_KAFKA_SSL_CERTFILE AXISWATCH_KAFKA_SSL_KEYFILE AXISWATCH_KAFKA_SSL_CAFILE \
            AXISWATCH_KAFKA_SASL_PASSWORD_FILE; do
        [[ -r "${!var:-}" ]] || die "SASL_SSL needs $var (a readable file)"
    done
    [[ "${AXISWATCH_KAFKA_SASL_USERNAME:-}" =~ ^[A-Za-z0-9._-]+$ ]] \
        || die "SASL_SSL needs AXISWATCH_KAFKA_SASL_USERNAME (letters, digits, . _ -)"
    # The storage tool's --add-scram syntax and the JAAS line quote nothing: keep the password to safe characters.
    [[ "$(sasl_password)" =~ ^[A-Za-z0-9._~-]+$ ]] \
        || die "the password in AXISWATCH_KAFKA_SASL_PASSWORD_FILE must be letters, digits, . _ ~ - only"
}

sasl_password() { head -n 1 "$AXISWATCH_KAFKA_SASL_PASSWORD_FILE" | tr -d '\r\n'; }

# The quorum: "1@127.0.0.1:CPORT,2@..." from $STATE/ports.
voters() { awk '{printf "%s%s@127.0.0.1:%s", (NR > 1 ? "," : ""), $1, $3} END {print ""}' "$STATE/ports"; }

# write_config N: node N's server.properties (mode 600: with SASL_SSL it holds the password) and log4j2.xml.
write_config() {
    local node="$1" dir port cport n copies insync
    dir="$(node_dir "$node")"
    port="$(node_port "$node" 2)"
    cport="$(node_port "$node" 3)"
    n="$(cluster_size)"
    copies="$(replication_factor "$n")"
    insync="$(min_insync "$n")"
    mkdir -p "$dir/data" "$dir/logs"
    (
        umask 077
        cat >"$dir/server.properties" <<EOF
# Written by scripts/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=${node}
controller.quorum.voters=$(voters)
controller.listener.names=CONTROLLER
listeners=${SECURITY}://127.0.0.1:${port},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=${SECURITY}://127.0.0.1:${port}
inter.broker.listener.name=${SECURITY}
listener.security.protocol.map=${SECURITY}:${SECURITY},CONTROLLER:PLAINTEXT
log.dirs=${dir}/data

# ${n} node(s): every topic, internal ones too, at replication factor ${copies}; a write with acks=all
# counts once ${insync} copies have it, so with 3 nodes one can be lost (or restarted) without losing a write.
num.partitions=1
default.replication.factor=${copies}
min.insync.replicas=${insync}
offsets.topic.replication.factor=${copies}
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=${copies}
transaction.state.log.min.isr=${insync}
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=${copies}
share.coordinator.state.topic.min.isr=${insync}
# A leader elected from outside the in-sync replicas would drop acknowledged writes.
unclean.leader.election.enable=false
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
EOF
        if [[ "$SECURITY" == SASL_SSL ]]; then
            local mechanism
            mechanism="$(echo "$SASL_MECHANISM" | tr '[:upper:]' '[:lower:]')"
            # Kafka 4 reads PEM directly: the private key and its certificate chain in one keystore file.
            cat "$AXISWATCH_KAFKA_SSL_KEYFILE" "$AXISWATCH_KAFKA_SSL_CERTFILE" >"$dir/keystore.pem"
            cat >>"$dir/server.properties" <<EOF

# SASL_SSL: clients and the other nodes authenticate with SCRAM over TLS.
sasl.enabled.mechanisms=${SASL_MECHANISM}
sasl.mechanism.inter.broker.protocol=${SASL_MECHANISM}
listener.name.sasl_ssl.${mechanism}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${AXISWATCH_KAFKA_SASL_USERNAME}" password="$(sasl_password)";
ssl.keystore.type=PEM
ssl.keystore.location=${dir}/keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=${AXISWATCH_KAFKA_SSL_CAFILE}
ssl.client.auth=none
EOF
        fi
    )
    cat >"$dir/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/kafka.sh. The node logs to \${sys:kafka.logs.dir}/server.log only. -->
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

# java_opts N: the JVM options of node N, in JAVA_OPTS.
java_opts() {
    local dir
    dir="$(node_dir "$1")"
    # shellcheck disable=SC2206
    local heap=($HEAP_OPTS)
    JAVA_OPTS=("${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -Djava.awt.headless=true
        "-Dkafka.logs.dir=$dir/logs"
        "-Dlog4j2.configurationFile=$dir/log4j2.xml"
        -cp "$LIBS/*")
}

cluster_id() {
    if [[ ! -s "$STATE/cluster_id" ]]; then
        # Same format as `kafka-storage.sh random-uuid`: 16 random bytes, base64url, no padding; and, like
        # Kafka's own Uuid.randomUuid, never starting with "-", which the storage tool would read as an option.
        python3 -c 'import base64,uuid
while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"): pass
print(cid)' >"$STATE/cluster_id"
    fi
    cat "$STATE/cluster_id"
}

# format_storage N: format node N's log dir once, with the cluster's id (and, with SASL_SSL, the SCRAM
# user: its credentials then live in the cluster's metadata from the start).
format_storage() {
    local node="$1" dir cid scram=()
    dir="$(node_dir "$node")"
    [[ -f "$dir/data/meta.properties" ]] && return 0
    cid="$(cluster_id)"
    if [[ "$SECURITY" == SASL_SSL ]]; then
        scram=(--add-scram "${SASL_MECHANISM}=[name=${AXISWATCH_KAFKA_SASL_USERNAME},password=$(sasl_password)]")
    fi
    log "formatting node $node (cluster id $cid)"
    java_opts "$node"
    if ! "$JAVA" "${JAVA_OPTS[@]}" kafka.tools.StorageTool format \
            -t "$cid" -c "$dir/server.properties" --ignore-formatted "${scram[@]}" \
            >"$dir/format.log" 2>&1 </dev/null; then
        show_logs "$dir"
        die "kafka storage format of node $node failed"
    fi
}

# --- readiness ----------------------------------------------------------------

# wait_ready PORT PID TIMEOUT BROKERS [CAFILE]: poll a node until it answers. PLAINTEXT: a real Kafka
# Metadata (v4) request, until it lists BROKERS live brokers. SASL_SSL (CAFILE given): a TLS handshake that
# verifies the node's certificate against CAFILE, then ApiVersions, the one request Kafka answers before
# SASL authentication (a node opens its client listener once started). Exit 0 ready, 1 timeout, 2 died.
wait_ready() {
    python3 - "$@" <<'PY'
import socket, ssl, struct, sys, time

port, pid, timeout, want = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
cafile = sys.argv[5] if len(sys.argv) > 5 else None

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

def ask(api_key, version, body):
    client_id = b"axiswatch-ready"
    # Request header v1: api key, version, correlation id, client id; the answer starts with the correlation id.
    req = struct.pack(">hhih", api_key, version, 7, len(client_id)) + client_id + body
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
        s = ssl.create_default_context(cafile=cafile).wrap_socket(raw, server_hostname="127.0.0.1") if cafile else raw
        s.settimeout(5)
        s.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        answer = recv_exact(s, size)
    if struct.unpack(">i", answer[:4])[0] != 7:
        raise ValueError("bad correlation id")
    return answer[4:]

def ready():
    if cafile:
        return struct.unpack(">h", ask(18, 0, b"")[:2])[0] == 0  # ApiVersions v0: its error code
    # Metadata v4 (topics: empty array, allow_auto_topic_creation: false): throttle time, then brokers.
    return struct.unpack(">ii", ask(3, 4, struct.pack(">ib", 0, 0))[:8])[1] >= want

deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    if not alive(pid):
        sys.exit(2)
    try:
        if ready():
            sys.exit(0)
    except (OSError, ValueError, struct.error):
        pass
    time.sleep(0.5)
sys.exit(1)
PY
}

# --- commands -----------------------------------------------------------------

# assign_ports N: keep the nodes' ports of the last start when they can be kept (a stable address across
# stop/start; running nodes hold theirs), else pick free ones for every node.
assign_ports() {
    local n="$1" node port cport keep=1 running=0
    for node in $(seq 1 "$n"); do node_pid "$node" >/dev/null && running=1; done
    if [[ -s "$STATE/ports" && "$(wc -l <"$STATE/ports")" -eq "$n" ]]; then
        ((running)) && return 0
        while read -r node port cport; do
            port_is_free "$port" && port_is_free "$cport" || keep=0
        done <"$STATE/ports"
        ((keep)) && return 0
    fi
    ((running)) && die "nodes run but $STATE/ports does not list $n nodes; stop them first"
    local taken=" "
    : >"$STATE/ports.new"
    for node in $(seq 1 "$n"); do
        port="$(free_port)"
        while [[ "$taken" == *" $port "* ]]; do port="$(free_port)"; done
        cport="$(free_port)"
        while [[ "$taken $port " == *" $cport "* ]]; do cport="$(free_port)"; done
        taken+="$port $cport "
        echo "$node $port $cport" >>"$STATE/ports.new"
    done
    mv "$STATE/ports.new" "$STATE/ports"
}

# launch N: start node N's JVM in the background; prints its pid.
launch() {
    local node="$1" dir pidfile i
    dir="$(node_dir "$node")"
    pidfile="$dir/kafka.pid"
    rm -f "$pidfile"
    java_opts "$node"
    : >"$dir/kafka.out"
    # setsid: own session, so a Ctrl-C aimed at the caller does not hit the JVM
    # directly; the wrapper writes the JVM's own pid (exec keeps it).
    # shellcheck disable=SC2016  # $$ and $1 are for the inner bash
    nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-launch "$pidfile" \
        "$JAVA" "${JAVA_OPTS[@]}" kafka.Kafka "$dir/server.properties" \
        >>"$dir/kafka.out" 2>&1 </dev/null 9>&- &
    for ((i = 0; i < 100; i++)); do
        [[ -s "$pidfile" ]] && break
        sleep 0.05
    done
    [[ -s "$pidfile" ]] || { show_logs "$dir"; die "node $node did not start"; }
    cat "$pidfile"
}

cmd_start() {
    lock_state
    local n node pid
    n="$(cluster_size)"
    check_size "$n"
    check_java
    check_security
    command -v python3 >/dev/null 2>&1 || die "python3 not found"
    fetch_jars
    assign_ports "$n"
    echo "$n" >"$STATE/brokers"

    # Every stopped node first, then wait: a quorum needs a majority of its voters up before any is ready.
    local started=()
    for node in $(seq 1 "$n"); do
        if pid="$(node_pid "$node")"; then
            log "node $node already running (pid $pid)"
            continue
        fi
        write_config "$node"
        format_storage "$node"
        log "starting node $node on 127.0.0.1:$(node_port "$node" 2) ($SECURITY; controller" \
            "127.0.0.1:$(node_port "$node" 3)), state $(node_dir "$node")"
        pid="$(launch "$node")"
        started+=("$node:$pid")
    done

    local entry rc cafile=()
    [[ "$SECURITY" == SASL_SSL ]] && cafile=("$AXISWATCH_KAFKA_SSL_CAFILE")
    for entry in "${started[@]}"; do
        node="${entry%%:*}" pid="${entry#*:}"
        rc=0
        wait_ready "$(node_port "$node" 2)" "$pid" "$START_TIMEOUT" "$n" "${cafile[@]}" || rc=$?
        if ((rc != 0)); then
            show_logs "$(node_dir "$node")"
            ((rc == 2)) && die "node $node exited during startup (logs above)"
            die "node $node not ready after ${START_TIMEOUT}s (logs above; \`stop\` ends the others)"
        fi
        log "node $node ready (pid $pid)"
    done
    awk '{printf "%s127.0.0.1:%s", (NR > 1 ? "," : ""), $2} END {print ""}' "$STATE/ports" >"$STATE/bootstrap"
    print_env ""
}

stop_server() {
    log "stopping node(s) (pid $1)"
    # shellcheck disable=SC2086  # one pid per word
    stop_pids $1
    rm -f "$STATE"/node-*/kafka.pid "$STATE/bootstrap"
}

remove_state() {
    rm -rf "$STATE"
    log "removed $STATE"
}

# pid N: node N's pid, for a test or an operator who wants to kill that one node.
cmd_pid() {
    [[ $# -eq 1 && "$1" =~ ^[1-9]$ ]] || usage
    [[ -d "$STATE" ]] || die "no state dir $STATE"
    node_pid "$1" || die "node $1 is not running"
}

cmd_fetch() {
    check_java
    fetch_jars
}

dispatch "$@"
