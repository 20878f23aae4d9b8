#!/usr/bin/env bash
# The multi-process deployment without Docker: the repo's own Kafka and PostgreSQL plus the four
# services and the API as separate processes (`make up` / `make down`).
#
# Usage:
#   scripts/local-stack.sh up [--clean]    start everything (state and logs under $AXISWATCH_VAR_DIR, default var/stack)
#   scripts/local-stack.sh down [--clean]  stop the services, then Kafka and PostgreSQL (--clean also deletes their data)
#   scripts/local-stack.sh status          which processes run
#   scripts/local-stack.sh env             the KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL (the services' role) /
#                                          MIGRATION_DATABASE_URL (the schema's owner) exports of the running stack
# With NOTIFIER_CONFIG set (a channel file, docs/notifier.md), the notifier runs as well.
# Settings come from the environment / .env as for every service (see README). PRODUCER_ARGS (default
# "--synthetic --robots 5 --faults") are passed to the producer; PYTHON (default .venv/bin/python) runs the services.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AXISWATCH_VAR_DIR="${AXISWATCH_VAR_DIR:-$REPO/var/stack}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
RUN="$AXISWATCH_VAR_DIR/run"
SERVICES=(consumer_db consumer_alerts dashboard api producer)
note() { echo "local-stack: $*" >&2; }

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

export_services() {
    eval "export $("$REPO/scripts/kafka.sh" env | grep -o 'KAFKA_BOOTSTRAP_SERVERS=.*')"
    # Least privilege: the services connect as axiswatch_app (no superuser, no DDL); the sink's migrations
    # run as the schema's owner, axiswatch_owner (scripts/postgres-roles.sql, docs/consumer_db.md).
    DATABASE_URL="$(cat "$AXISWATCH_VAR_DIR/postgres/app_database_url")"
    MIGRATION_DATABASE_URL="$(cat "$AXISWATCH_VAR_DIR/postgres/owner_database_url")"
    export DATABASE_URL MIGRATION_DATABASE_URL
}

start_service() {
    local name=$1; shift
    if alive "$name"; then note "$name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
    # exec: the pid saved is the service's own. Without it, it was a subshell's, and `down` killed only that.
    (cd "$REPO" && exec nohup "$PYTHON" -m "$name" "$@" >>"$RUN/$name.log" 2>&1) &
    echo $! >"$RUN/$name.pid"
    note "$name started (pid $(cat "$RUN/$name.pid"), log $RUN/$name.log)"
}

wait_for_dashboard() {
    local port=${DASHBOARD_PORT:-5006}
    for _ in $(seq 1 60); do
        if "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2>/dev/null; then
            note "dashboard: http://localhost:$port/ (sign in as a user of: python -m api add-user NAME --role operator)"; return 0
        fi
        alive dashboard || { note "dashboard exited; see $RUN/dashboard.log"; tail -20 "$RUN/dashboard.log" >&2; return 1; }
        sleep 1
    done
    note "dashboard did not answer on port $port within 60 s; see $RUN/dashboard.log"; return 1
}

wait_until_ready() {  # NAME PORT: the service's /readyz (common/metrics.py) answers 200; no port: nothing to ask
    local name=$1 port=$2
    [[ -z "$port" || "$port" == 0 ]] && return 0
    for _ in $(seq 1 60); do
        if "$PYTHON" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=2)" 2>/dev/null; then
            return 0
        fi
        alive "$name" || { note "$name exited; see $RUN/$name.log"; tail -20 "$RUN/$name.log" >&2; return 1; }
        sleep 1
    done
    note "$name: no ready answer on port $port within 60 s (set in .env only?); going on"
}

up() {
    mkdir -p "$RUN"
    [[ "${1:-}" == "--clean" ]] && down --clean
    mkdir -p "$RUN"
    "$REPO/scripts/kafka.sh" start >/dev/null
    "$REPO/scripts/postgres.sh" start >/dev/null
    export_services
    (cd "$REPO" && "$PYTHON" -m consumer_db migrate)
    start_service consumer_db
    start_service consumer_alerts
    start_service dashboard
    start_service api
    if [[ -n "${NOTIFIER_CONFIG:-}" ]]; then start_service notifier; fi
    # The producer starts once the consumers are subscribed: the dashboard reads from the topic's end, so
    # readings sent before it subscribed would never reach its live view.
    wait_until_ready consumer_db "${SINK_METRICS_PORT-9102}" || return 1
    wait_until_ready consumer_alerts "${ALERTS_METRICS_PORT-9103}" || return 1
    wait_until_ready dashboard "${DASHBOARD_PORT:-5006}" || return 1
    # shellcheck disable=SC2086  # PRODUCER_ARGS is a word list on purpose
    start_service producer ${PRODUCER_ARGS:---synthetic --robots 5 --faults}
    wait_for_dashboard
}

stop_service() {
    local name=$1
    alive "$name" || { rm -f "$RUN/$name.pid"; return 0; }
    local pid; pid=$(cat "$RUN/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then note "$name did not stop in 10 s; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$RUN/$name.pid"
    note "$name stopped"
}

down() {
    # The producer first, so the consumers can drain what it sent before they stop.
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_service "${SERVICES[$i]}"; done
    stop_service notifier
    "$REPO/scripts/kafka.sh" stop "$@" >/dev/null 2>&1 || true
    "$REPO/scripts/postgres.sh" stop "$@" >/dev/null 2>&1 || true
    [[ "${1:-}" == "--clean" ]] && rm -rf "$AXISWATCH_VAR_DIR"
    return 0
}

status() {
    local rc=0
    for name in "${SERVICES[@]}"; do
        if alive "$name"; then echo "$name running (pid $(cat "$RUN/$name.pid"))"; else echo "$name stopped"; rc=1; fi
    done
    if alive notifier; then echo "notifier running (pid $(cat "$RUN/notifier.pid"))"
    elif [[ -n "${NOTIFIER_CONFIG:-}" ]]; then echo "notifier stopped"; rc=1; fi
    if "$REPO/scripts/kafka.sh" status >/dev/null 2>&1; then echo "kafka running"; else echo "kafka stopped"; rc=1; fi
    if "$REPO/scripts/postgres.sh" status >/dev/null 2>&1; then echo "postgres running"; else echo "postgres stopped"; rc=1; fi
    return $rc
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) shift; down "$@" ;;
    status) status ;;
    env) export_services; echo "export KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"; echo "export DATABASE_URL='$DATABASE_URL'"
        echo "export MIGRATION_DATABASE_URL='$MIGRATION_DATABASE_URL'" ;;
    *) sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2 ;;
esac
