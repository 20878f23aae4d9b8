# shellcheck shell=bash
# The skeleton kafka.sh and postgres.sh share (sourced, not run): logging, the state directory and its
# lock, process and port helpers, the status/env commands and the command dispatcher.
#
# A script sets NAME (its log prefix) and calls `init_state SUBDIR`, then defines
#   server_pid     print the pid(s) of its running server (space-separated) and return 0, or return 1
#   server_where   a short "where it listens" for status
#   ENV_VAR, ENV_FILE  the variable `env` prints, and the file in $STATE holding its value
#   TAKES_ARGS     (optional) the commands that take arguments, default "stop"
#   cmd_start, stop_server PIDS (what server_pid printed), remove_state (for stop --clean),
#   and any extra cmd_<name> it offers
# and ends with `dispatch "$@"`.

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

log() { echo "$NAME: $*" >&2; }
die() { log "error: $*"; exit 1; }

# The script's own header comment, up to `set -euo pipefail`, is its usage text.
usage() {
    sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
}

# init_state SUBDIR: STATE is $AXISWATCH_VAR_DIR/SUBDIR when that is set (concurrent runs do not
# collide), else <repo>/var/SUBDIR.
init_state() {
    if [[ -n "${AXISWATCH_VAR_DIR:-}" ]]; then
        mkdir -p "$AXISWATCH_VAR_DIR"
        STATE="$(cd "$AXISWATCH_VAR_DIR" && pwd)/$1"
    else
        STATE="$REPO_ROOT/var/$1"
    fi
}

# One start/stop at a time per state directory (fd 9, released when the script exits).
lock_state() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock 9
}

# alive PID: the process exists and is not a zombie.
alive() {
    local pid="$1" state
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" ]]
}

# runs PID PATTERN: PID is alive and its command line matches PATTERN (a guard against pid reuse).
runs() {
    alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "$2"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_is_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
# Like the servers themselves: TIME_WAIT leftovers must not count as "in use".
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(1)
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# print_env PREFIX: "PREFIX$ENV_VAR=<value>" (stdout carries nothing else).
print_env() {
    [[ -s "$STATE/$ENV_FILE" ]] || die "no $ENV_FILE in $STATE"
    echo "${1}${ENV_VAR}=$(cat "$STATE/$ENV_FILE")"
}

cmd_status() {
    local pid
    if pid="$(server_pid)"; then
        log "running (pid $pid) at $(server_where), state $STATE"
        return 0
    fi
    log "not running (state $STATE)"
    return 1
}

cmd_env() {
    server_pid >/dev/null || die "not running (state $STATE); run: scripts/$NAME start"
    print_env "export "
}

# stop [--clean]: stop the server if it runs; --clean also deletes its state.
cmd_stop() {
    local clean=0 arg pid
    for arg in "$@"; do
        case "$arg" in
            --clean) clean=1 ;;
            *) usage ;;
        esac
    done
    if [[ ! -d "$STATE" ]]; then
        log "not running (no state dir $STATE)"
        return 0
    fi
    lock_state
    if pid="$(server_pid)"; then
        stop_server "$pid"
    else
        log "not running"
    fi
    if ((clean)); then
        exec 9>&-
        remove_state
    fi
}

# dispatch "$@": run cmd_<command>. Only the commands in TAKES_ARGS (default: `stop`, which takes its
# flag) get arguments and check them; every other one (start, status, env, ...) takes none.
dispatch() {
    local command="${1:-help}"
    shift || true
    case "$command" in
        -h | --help | help) usage ;;
        *)
            [[ "$command" =~ ^[a-z]+$ ]] && declare -F "cmd_$command" >/dev/null || usage
            [[ " ${TAKES_ARGS:-stop} " == *" $command "* || $# -eq 0 ]] || usage
            "cmd_$command" "$@"
            ;;
    esac
}
