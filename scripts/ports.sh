# shellcheck shell=bash
# Port helpers shared by kafka.sh and postgres.sh (sourced, not run).

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
