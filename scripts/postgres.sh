#!/usr/bin/env bash
# Run a real, throwaway PostgreSQL server on 127.0.0.1 for tests and CI,
# using the Debian server binaries (no Docker).
#
# Usage:
#   scripts/postgres.sh start          initdb if needed, start, create database "axiswatch" and its
#                                      roles (scripts/postgres-roles.sql); prints the superuser's
#                                      DATABASE_URL=postgresql+psycopg2://axiswatch:PW@127.0.0.1:PORT/axiswatch
#   scripts/postgres.sh stop [--clean] pg_ctl stop -m fast (--clean also deletes data and state)
#   scripts/postgres.sh status         exit 0 if the server is running, 1 if not
#   scripts/postgres.sh env            print: export DATABASE_URL=... (the superuser, for tests and admin),
#                                      OWNER_DATABASE_URL=... (axiswatch_owner: migrations) and
#                                      APP_DATABASE_URL=... (axiswatch_app: what the services connect as)
#
# Typical use:   scripts/postgres.sh start >/dev/null && eval "$(scripts/postgres.sh env)"
#
# Needs: the PostgreSQL server binaries (apt-get install postgresql), python3.
# initdb/postgres refuse to run as root, so as root the server runs as the
# "postgres" system user (or a system user "axiswatch-pg", created if there is
# no "postgres" user), via runuser. As a non-root user it runs as that user.
# Only the DATABASE_URL line goes to stdout; progress goes to stderr.
#
# Files:
#   state  <repo>/var/postgres  ($AXISWATCH_VAR_DIR/postgres if that is set), root-only secrets:
#          password, database_url, owner_password, owner_database_url, app_password, app_database_url
#          (all mode 600), port, pghome (pointer to the server's dir)
#   server dir (owned by the server user): <state>/pg, or /tmp/axiswatch-pg-<hash>
#          when the server user cannot reach <state>; holds data/ and postgres.log
# Environment knobs:
#   AXISWATCH_PG_BINDIR         directory with initdb/pg_ctl/postgres (default: newest found)
#   AXISWATCH_PG_START_TIMEOUT  seconds for pg_ctl -w (default 60)
#   AXISWATCH_PG_SSL_CERTFILE   TLS (docs/consumer_db.md, "TLS"): the server's PEM certificate, valid for 127.0.0.1;
#   AXISWATCH_PG_SSL_KEYFILE    its PEM private key. With both, TCP clients must use TLS (hostssl only, a plain
#                               connection is rejected), passwords are checked with scram-sha-256 as always.
#   AXISWATCH_PG_SSL_CAFILE     the CA that signs the certificate: the URLs printed then carry
#                               ?sslmode=verify-full&sslrootcert=<it>. Give the knobs on every start.
set -euo pipefail

NAME=postgres.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
init_state postgres
ENV_VAR=DATABASE_URL
ENV_FILE=database_url
START_TIMEOUT="${AXISWATCH_PG_START_TIMEOUT:-60}"
DB_USER="axiswatch"
DB_NAME="axiswatch"

# --- binaries and OS user -----------------------------------------------------

find_bindir() {
    if [[ -n "${AXISWATCH_PG_BINDIR:-}" ]]; then
        [[ -x "$AXISWATCH_PG_BINDIR/pg_ctl" ]] || die "AXISWATCH_PG_BINDIR=$AXISWATCH_PG_BINDIR has no pg_ctl"
        echo "$AXISWATCH_PG_BINDIR"
        return 0
    fi
    local cands=() d
    if command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        [[ -n "$d" ]] && cands+=("$d")
    fi
    for d in /usr/lib/postgresql/*/bin; do
        [[ -d "$d" ]] && cands+=("$d")
    done
    # Newest version first (the directory name carries the major version).
    local best=""
    while IFS= read -r d; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
            best="$d"
            break
        fi
    done < <(printf '%s\n' "${cands[@]+"${cands[@]}"}" | sort -u -V -r)
    [[ -n "$best" ]] || die "no PostgreSQL server binaries found (initdb/pg_ctl/postgres); install them: apt-get install postgresql"
    echo "$best"
}

# The OS user the server runs as (only meaningful as root).
server_user() {
    if ((EUID != 0)); then
        id -un
        return 0
    fi
    if id -u postgres >/dev/null 2>&1; then
        echo postgres
        return 0
    fi
    if ! id -u axiswatch-pg >/dev/null 2>&1; then
        log "no 'postgres' user; creating system user 'axiswatch-pg'"
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin axiswatch-pg >&2 \
            || die "could not create system user axiswatch-pg"
    fi
    echo axiswatch-pg
}

# as_server CMD...: run CMD as the server user (from /, whose cwd it can read).
as_server() {
    if ((EUID == 0)); then
        (cd / && runuser -u "$PGUSER" -- "$@")
    else
        (cd / && "$@")
    fi
}

# --- helpers ------------------------------------------------------------------

# Directory owned by the server user that holds data/ and postgres.log.
# Prefer <state>/pg; if the server user cannot reach it (e.g. a 0700 parent
# such as a mktemp -d dir, or a home dir), fall back to /tmp/axiswatch-pg-<hash>.
choose_pghome() {
    if [[ -s "$STATE/pghome" ]]; then
        PGHOME="$(cat "$STATE/pghome")"
        if [[ -d "$PGHOME" ]] && as_server test -w "$PGHOME" -a -x "$PGHOME"; then
            return 0
        fi
        log "previous server dir $PGHOME is gone or unusable; starting afresh"
    fi
    local cand="$STATE/pg"
    mkdir -p "$cand"
    chmod 700 "$cand"
    ((EUID == 0)) && chown "$PGUSER:" "$cand"
    if as_server test -w "$cand" -a -x "$cand" 2>/dev/null; then
        PGHOME="$cand"
    else
        rmdir "$cand" 2>/dev/null || true
        local hash
        hash="$(printf '%s' "$STATE" | sha256sum | cut -c1-12)"
        cand="/tmp/axiswatch-pg-$hash"
        if [[ -L "$cand" ]] || { [[ -e "$cand" ]] && [[ "$(stat -c %U "$cand")" != "$PGUSER" ]]; }; then
            die "$cand exists and is not a directory owned by $PGUSER; remove it"
        fi
        mkdir -p "$cand"
        chmod 700 "$cand"
        ((EUID == 0)) && chown "$PGUSER:" "$cand"
        as_server test -w "$cand" -a -x "$cand" || die "server user $PGUSER cannot use $cand"
        log "server user $PGUSER cannot reach $STATE; keeping the data in $cand"
        PGHOME="$cand"
    fi
    echo "$PGHOME" >"$STATE/pghome"
}

read_pghome() {
    PGHOME=""
    if [[ -s "$STATE/pghome" ]]; then
        PGHOME="$(cat "$STATE/pghome")"
    fi
}

# Pid of the server for this state dir if it runs (postmaster.pid names a live postgres), else exit status 1.
server_pid() {
    read_pghome
    [[ -n "$PGHOME" && -f "$PGHOME/data/postmaster.pid" ]] || return 1
    local pid
    pid="$(head -n1 "$PGHOME/data/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && runs "$pid" postgres || return 1
    echo "$pid"
}

server_where() { echo "127.0.0.1:$(cat "$STATE/port" 2>/dev/null || echo '?')"; }

show_log() {
    if [[ -n "${PGHOME:-}" && -s "$PGHOME/postgres.log" ]]; then
        echo "----- tail -n 40 $PGHOME/postgres.log -----" >&2
        tail -n 40 "$PGHOME/postgres.log" >&2 || true
    fi
}

# What the URLs add for TLS: the client checks the server's certificate and name against the CA.
url_query() {
    if [[ -n "${AXISWATCH_PG_SSL_CAFILE:-}" ]]; then
        echo "?sslmode=verify-full&sslrootcert=$(realpath "$AXISWATCH_PG_SSL_CAFILE")"
    fi
}

write_url() {
    local port="$1" pw query
    query="$(url_query)"
    pw="$(cat "$STATE/password")"
    (umask 077 && echo "postgresql+psycopg2://${DB_USER}:${pw}@127.0.0.1:${port}/${DB_NAME}${query}" >"$STATE/database_url")
    chmod 600 "$STATE/database_url"
    local role
    for role in owner app; do
        pw="$(cat "$STATE/${role}_password")"
        (umask 077 && echo "postgresql+psycopg2://axiswatch_${role}:${pw}@127.0.0.1:${port}/${DB_NAME}${query}" \
            >"$STATE/${role}_database_url")
        chmod 600 "$STATE/${role}_database_url"
    done
}

# tls_options: the server options for TLS (none without the knobs). The certificate and key are copied
# beside the data, owned by the server user (it may not reach the caller's files; the key must be 0600), and a
# pg_hba of its own accepts TCP clients over TLS only.
TLS_OPTIONS=""
tls_options() {
    TLS_OPTIONS=""
    [[ -n "${AXISWATCH_PG_SSL_CERTFILE:-}${AXISWATCH_PG_SSL_KEYFILE:-}" ]] || return 0
    [[ -r "${AXISWATCH_PG_SSL_CERTFILE:-}" && -r "${AXISWATCH_PG_SSL_KEYFILE:-}" ]] \
        || die "TLS needs both AXISWATCH_PG_SSL_CERTFILE and AXISWATCH_PG_SSL_KEYFILE (readable files)"
    local owner=()
    ((EUID == 0)) && owner=(-o "$PGUSER")
    install -m 644 "${owner[@]}" "$AXISWATCH_PG_SSL_CERTFILE" "$PGHOME/server.crt"
    install -m 600 "${owner[@]}" "$AXISWATCH_PG_SSL_KEYFILE" "$PGHOME/server.key"
    as_server tee "$PGHOME/pg_hba_tls.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh when TLS is on: over TCP, TLS or nothing; passwords by scram-sha-256.
local     all all           scram-sha-256
hostssl   all all 127.0.0.1/32 scram-sha-256
hostnossl all all all       reject
EOF
    TLS_OPTIONS="-c ssl=on -c ssl_cert_file=$PGHOME/server.crt -c ssl_key_file=$PGHOME/server.key"
    TLS_OPTIONS+=" -c hba_file=$PGHOME/pg_hba_tls.conf"
}

find_psql() {
    local psql="$BINDIR/psql"
    [[ -x "$psql" ]] || psql="$(command -v psql || true)"
    [[ -n "$psql" ]] || die "psql not found (apt-get install postgresql-client)"
    echo "$psql"
}

new_password() {
    [[ -s "$1" ]] || (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16))' >"$1")
    chmod 600 "$1"
}

# The schema owner and the services' role (least privilege): scripts/postgres-roles.sql, idempotent.
make_roles() {
    local psql="$1" port="$2"
    new_password "$STATE/owner_password"
    new_password "$STATE/app_password"
    PGPASSWORD="$(cat "$STATE/password")" "$psql" -X -q -h 127.0.0.1 -p "$port" -U "$DB_USER" -d "$DB_NAME" \
        -v owner_password="$(cat "$STATE/owner_password")" -v app_password="$(cat "$STATE/app_password")" \
        -f "$SCRIPT_DIR/postgres-roles.sql" >/dev/null || die "could not set up the database roles"
}

# The role URLs beside the superuser's (tests and `make up` connect as the roles).
print_role_env() {
    local role
    for role in owner app; do
        [[ -s "$STATE/${role}_database_url" ]] && echo "export ${role^^}_DATABASE_URL=$(cat "$STATE/${role}_database_url")"
    done
    return 0
}

cmd_env() {
    server_pid >/dev/null || die "not running (state $STATE); run: scripts/postgres.sh start"
    print_env "export "
    print_role_env
}

# --- init ---------------------------------------------------------------------

init_cluster() {
    local data="$PGHOME/data"
    if [[ -f "$data/PG_VERSION" && ! -s "$STATE/password" ]]; then
        # Data left over from a state dir that was deleted: its password is
        # lost, so it is useless. Stop whatever still runs there and start afresh.
        log "discarding orphaned data dir $data (its password file is gone)"
        as_server "$BINDIR/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    [[ -f "$data/PG_VERSION" && -s "$STATE/password" ]] && return 0
    if [[ -e "$data" ]]; then
        as_server rm -rf "$data"
    fi
    if [[ ! -s "$STATE/password" ]]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16))' >"$STATE/password")
    fi
    chmod 600 "$STATE/password"
    log "initdb ($("$BINDIR/postgres" --version)) in $data as OS user $PGUSER"
    # The password file must be readable by the server user only, and briefly.
    local pwfile
    pwfile="$(mktemp /tmp/axiswatch-pgpw.XXXXXX)"
    chmod 600 "$pwfile"
    cat "$STATE/password" >"$pwfile"
    ((EUID == 0)) && chown "$PGUSER" "$pwfile"
    local rc=0
    as_server "$BINDIR/initdb" -D "$data" -U "$DB_USER" --pwfile="$pwfile" \
        --auth=scram-sha-256 --auth-host=scram-sha-256 --auth-local=scram-sha-256 \
        -E UTF8 --locale=C --no-sync --no-instructions >"$STATE/initdb.log" 2>&1 || rc=$?
    rm -f "$pwfile"
    if ((rc != 0)); then
        cat "$STATE/initdb.log" >&2
        die "initdb failed"
    fi
    # Unix socket inside the data dir when the path fits (sun_path is 108 bytes),
    # otherwise TCP only; clients here always use 127.0.0.1.
    local sockdir="$data"
    ((${#data} + 20 > 100)) && sockdir=""
    as_server tee -a "$data/postgresql.conf" >/dev/null <<EOF

# ---- added by scripts/axiswatch postgres.sh (throwaway test server) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '${sockdir}'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] '
EOF
}

# --- commands -----------------------------------------------------------------

cmd_start() {
    lock_state
    local pid
    if pid="$(server_pid)"; then
        log "already running (pid $pid), state $STATE"
        if [[ ! -s "$STATE/app_database_url" ]]; then  # started by an older version: no roles yet
            BINDIR="$(find_bindir)"
            make_roles "$(find_psql)" "$(cat "$STATE/port")"
            write_url "$(cat "$STATE/port")"
        fi
        print_env ""
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found"
    BINDIR="$(find_bindir)"
    PGUSER="$(server_user)"
    choose_pghome
    init_cluster

    local port=""
    if [[ -s "$STATE/port" ]]; then
        port="$(cat "$STATE/port")"
        if ! [[ "$port" =~ ^[0-9]+$ ]] || ! port_is_free "$port"; then port=""; fi
    fi
    [[ -n "$port" ]] || port="$(free_port)"
    echo "$port" >"$STATE/port"

    tls_options
    # A stale postmaster.pid from a crash is handled by postgres itself.
    log "starting PostgreSQL on 127.0.0.1:$port (data $PGHOME/data${TLS_OPTIONS:+; TLS only})"
    if ! as_server "$BINDIR/pg_ctl" -D "$PGHOME/data" -l "$PGHOME/postgres.log" \
            -o "-p $port $TLS_OPTIONS" -w -t "$START_TIMEOUT" start >"$STATE/pg_ctl.log" 2>&1 </dev/null 9>&-; then
        cat "$STATE/pg_ctl.log" >&2
        show_log
        # Do not leave a half-started server behind.
        as_server "$BINDIR/pg_ctl" -D "$PGHOME/data" -m immediate -w stop >/dev/null 2>&1 || true
        die "PostgreSQL did not start (logs above)"
    fi

    # Create the application database (idempotent), over TCP with the password.
    local psql
    psql="$(find_psql)"
    local exists
    exists="$(PGPASSWORD="$(cat "$STATE/password")" "$psql" -X -q -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres \
        -tAc "select 1 from pg_database where datname = '$DB_NAME'")" || { show_log; die "cannot connect to the new server"; }
    if [[ "$exists" != "1" ]]; then
        PGPASSWORD="$(cat "$STATE/password")" "$psql" -X -q -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres \
            -c "create database $DB_NAME" >/dev/null || die "could not create database $DB_NAME"
    fi
    make_roles "$psql" "$port"
    write_url "$port"
    log "ready (pid $(server_pid || echo '?'))"
    print_env ""
}

stop_server() {
    local pid="$1"
    read_pghome  # server_pid found it in a subshell
    BINDIR="$(find_bindir)"
    PGUSER="$(stat -c %U "$PGHOME/data")"
    log "stopping PostgreSQL (pid $pid)"
    if ! as_server "$BINDIR/pg_ctl" -D "$PGHOME/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
        log "fast shutdown failed; trying immediate"
        as_server "$BINDIR/pg_ctl" -D "$PGHOME/data" -m immediate -w -t 10 stop >/dev/null 2>&1 \
            || kill -KILL "$pid" 2>/dev/null || true
    fi
}

remove_state() {
    read_pghome
    if [[ -n "$PGHOME" && -d "$PGHOME" ]]; then
        rm -rf "$PGHOME"
    fi
    rm -rf "$STATE"
    log "removed $STATE${PGHOME:+ and $PGHOME}"
}

dispatch "$@"
