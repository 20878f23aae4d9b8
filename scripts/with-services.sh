#!/usr/bin/env bash
# Run a command with a real Kafka broker and a real PostgreSQL server available,
# started locally (no Docker) when nothing else provides them.
#
# Usage:
#   scripts/with-services.sh CMD [ARGS...]
#   e.g. scripts/with-services.sh .venv/bin/python -m pytest -m integration
#
# For each service:
#   Kafka:      if KAFKA_BOOTSTRAP_SERVERS is unset, no Docker engine answers
#               (testcontainers would use it), and java + mvn exist, start
#               scripts/kafka.sh and export KAFKA_BOOTSTRAP_SERVERS.
#   PostgreSQL: if DATABASE_URL is unset, no Docker engine answers, and the
#               server binaries exist, start scripts/postgres.sh and export
#               DATABASE_URL (the password is never echoed by this script).
# State goes to a fresh mktemp -d dir (exported as AXISWATCH_VAR_DIR) unless
# AXISWATCH_VAR_DIR is already set, so concurrent runs do not collide.
# On exit (also on INT/TERM) only the services this script started are stopped
# (with --clean); the exit code is CMD's. A service that cannot be started is
# reported on stderr and CMD still runs (its tests then skip, or fail under CI).
#   AXISWATCH_SERVICES="kafka postgres"  which services to consider (default both)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $# -lt 1 ]]; then
    sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
fi

note() { echo "with-services: $*" >&2; }

WANT="${AXISWATCH_SERVICES:-kafka postgres}"
wants() { [[ " $WANT " == *" $1 "* ]]; }

started=()   # the scripts/*.sh this script started, to stop on exit
made_var=""
rc=0

# shellcheck disable=SC2317  # only reached through the traps
cleanup() {
    trap - EXIT INT TERM HUP
    set +e
    local script
    for script in "${started[@]}"; do
        "$SCRIPT_DIR/$script" stop --clean >/dev/null 2>&1 \
            || note "warning: could not stop scripts/$script (state under $AXISWATCH_VAR_DIR)"
    done
    if [[ -n "$made_var" ]]; then
        rm -rf "$made_var"
    fi
    exit "$rc"
}
trap cleanup EXIT
# While services start: stop, clean up what was started, and exit.
trap 'rc=130; exit 130' INT
trap 'rc=143; exit 143' TERM
trap 'rc=129; exit 129' HUP

docker_state=""
docker_answers() {
    if [[ -z "$docker_state" ]]; then
        docker_state=no
        if command -v docker >/dev/null 2>&1 && timeout 15 docker info >/dev/null 2>&1; then
            docker_state=yes
        fi
    fi
    [[ "$docker_state" == yes ]]
}

ensure_var_dir() {
    if [[ -z "${AXISWATCH_VAR_DIR:-}" ]]; then
        made_var="$(mktemp -d "${TMPDIR:-/tmp}/axiswatch-services.XXXXXX")"
        # Let the postgres system user reach its data dir inside; secrets in
        # here are mode 600 files.
        chmod 755 "$made_var"
        export AXISWATCH_VAR_DIR="$made_var"
    fi
}

# value_of NAME OUTPUT: the value of the NAME=... line in OUTPUT.
value_of() {
    printf '%s\n' "$2" | sed -n "s/^$1=//p" | tail -n 1
}

# provided LABEL VAR: true when VAR is already set, or a Docker engine answers (testcontainers' turn).
provided() {
    if [[ -n "${!2:-}" ]]; then
        note "$1: using the $2 already set"
        return 0
    fi
    if docker_answers; then
        note "$1: a Docker engine answers; leaving $1 to testcontainers"
        return 0
    fi
    return 1
}

# start_service LABEL SCRIPT VAR: run scripts/SCRIPT start (stopped on exit unless it was already running)
# and export VAR from the VAR=... line it prints. Returns 1 (after saying why) when that fails.
start_service() {
    local label="$1" script="$2" var="$3" out value
    ensure_var_dir
    if "$SCRIPT_DIR/$script" status >/dev/null 2>&1; then
        out="$("$SCRIPT_DIR/$script" start)" || true   # already running: not ours to stop
    else
        started+=("$script")
        if ! out="$("$SCRIPT_DIR/$script" start)"; then
            note "$label: NOT started: scripts/$script start failed (see above); running the command anyway"
            return 1
        fi
    fi
    value="$(value_of "$var" "$out")"
    if [[ -z "$value" ]]; then
        note "$label: NOT available: scripts/$script printed no $var"
        return 1
    fi
    export "$var=$value"
}

start_kafka() {
    provided Kafka KAFKA_BOOTSTRAP_SERVERS && return 0
    if ! command -v java >/dev/null 2>&1 && [[ ! -x "${JAVA_HOME:-/nonexistent}/bin/java" ]]; then
        note "Kafka: NOT started: java not found (apt-get install openjdk-17-jre-headless maven)"
        return 0
    fi
    if ! command -v mvn >/dev/null 2>&1 && [[ ! -f "$SCRIPT_DIR/../.cache/kafka/libs/.stamp" ]]; then
        note "Kafka: NOT started: mvn not found and no cached Kafka jars (apt-get install maven)"
        return 0
    fi
    start_service Kafka kafka.sh KAFKA_BOOTSTRAP_SERVERS || return 0
    note "Kafka: KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
}

start_postgres() {
    provided PostgreSQL DATABASE_URL && return 0
    if [[ -z "${AXISWATCH_PG_BINDIR:-}" ]] && ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null \
            && ! command -v pg_ctl >/dev/null 2>&1; then
        note "PostgreSQL: NOT started: no server binaries (apt-get install postgresql)"
        return 0
    fi
    start_service PostgreSQL postgres.sh DATABASE_URL || return 0
    # Never echo the password: show the URL with it masked.
    note "PostgreSQL: DATABASE_URL=$(printf '%s' "$DATABASE_URL" | sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#')"
}

wants postgres && start_postgres
wants kafka && start_kafka

# Run CMD as a child we can signal: SIGTERM/SIGHUP sent to this script are
# passed on to it (a terminal's Ctrl-C reaches it directly), then we wait for it
# to finish before cleaning up. The subshell restores default SIGINT/SIGQUIT
# handling (bash ignores them in background jobs) and keeps stdin attached.
child=""
# shellcheck disable=SC2317  # only reached through the traps
forward() {
    rc="$2"
    [[ -n "$child" ]] && kill -"$1" "$child" 2>/dev/null
    return 0
}
trap 'forward TERM 143' TERM
trap 'forward HUP 129' HUP
trap 'rc=130' INT
(
    trap - INT QUIT TERM HUP
    exec "$@"
) <&0 &
child=$!
while :; do
    status=0
    wait "$child" || status=$?
    # wait also returns (>128) when a trapped signal arrives: keep waiting
    # until the child itself has exited.
    if ! kill -0 "$child" 2>/dev/null; then
        rc="$status"
        break
    fi
done
exit "$rc"
