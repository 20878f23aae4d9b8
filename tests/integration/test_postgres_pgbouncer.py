"""The services behind a real PgBouncer in transaction mode, as a managed PostgreSQL's pooled endpoint (Neon's
``-pooler`` hosts) runs it: PgBouncer refuses the ``options`` startup parameter the services send (``-c
jit=off``), so common/store/db.py connects without it there and JIT stays off through the roles' default;
everything the services hold per connection is transaction-scoped (advisory locks, the staging table), so a
pool that hands each transaction another server connection stores exactly the input.

Debian's ``pgbouncer`` (.ci/run installs it), in front of a private PostgreSQL of the module
(scripts/postgres.sh); as root it runs as the ``postgres`` user (it refuses root).
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from glob import glob
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from common.store.db import make_engine
from tests.conftest import service_missing
from tests.fault_support import service_env, stream_through

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[2]
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
START = datetime(2024, 3, 1, 8, tzinfo=UTC)
ROBOTS, TICK_S, READINGS, AXES = 3, 2.0, 1500, [1, 2, 3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def private_postgres(tmp_path_factory):
    """A private PostgreSQL with the roles (scripts/postgres-roles.sql); its superuser, owner and app URLs."""
    if not (
        os.environ.get("AXISWATCH_PG_BINDIR") or glob("/usr/lib/postgresql/*/bin/pg_ctl") or shutil.which("pg_ctl")
    ):
        service_missing("no PostgreSQL server binaries for a private server (apt-get install postgresql)")
    home = tmp_path_factory.mktemp("pooled-postgres")
    env = {**os.environ, "AXISWATCH_VAR_DIR": str(home / "var")}
    script = [str(REPO / "scripts" / "postgres.sh")]
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=120)
    try:
        if started.returncode != 0:
            service_missing(f"scripts/postgres.sh start failed:\n{started.stderr[-2000:]}")
        state = home / "var" / "postgres"
        yield {role: (state / f"{role}database_url").read_text().strip() for role in ("", "owner_", "app_")}
    finally:
        subprocess.run([*script, "stop", "--clean"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def pgbouncer(private_postgres):
    """PgBouncer in transaction mode in front of the private server; the same three URLs through it."""
    if not os.access(PGBOUNCER, os.X_OK):
        service_missing("no pgbouncer (apt-get install pgbouncer)")
    server = make_url(private_postgres[""])
    port = free_port()
    # Readable by the user PgBouncer runs as (as root: postgres), which the pytest temp dirs are not.
    home = Path(tempfile.mkdtemp(prefix="axiswatch-pgbouncer-"))
    home.chmod(0o755)
    users = [make_url(url) for url in private_postgres.values()]
    (home / "userlist.txt").write_text("".join(f'"{u.username}" "{u.password}"\n' for u in users))
    (home / "pgbouncer.ini").write_text(
        f"""[databases]
* = host=127.0.0.1 port={server.port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {home}/userlist.txt
pool_mode = transaction
default_pool_size = 3
max_client_conn = 100
logfile = {home}/pgbouncer.log
"""
    )
    (home / "userlist.txt").chmod(0o600)
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        for name in ("userlist.txt", "pgbouncer.ini"):
            shutil.chown(home / name, "postgres")
        as_user = ["-u", "postgres"]
    process = subprocess.Popen([PGBOUNCER, *as_user, str(home / "pgbouncer.ini")], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "pgbouncer did not listen within 20 s"
            time.sleep(0.1)
        yield {
            role: str(make_url(url).set(port=port).render_as_string(hide_password=False))
            for role, url in private_postgres.items()
        }
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def test_the_pooler_refuses_startup_options_and_the_engine_connects_without(pgbouncer):
    plain = create_engine(pgbouncer["app_"], connect_args={"options": "-c jit=off"})
    with pytest.raises(OperationalError, match="unsupported startup parameter"):
        plain.connect().close()
    plain.dispose()
    engine = make_engine(pgbouncer["app_"], log_version=False)
    try:
        for _ in range(6):  # transaction mode: each transaction sees the role's default, whichever server it gets
            with engine.connect() as conn:
                assert conn.execute(text("show jit")).scalar_one() == "off"
    finally:
        engine.dispose()


def test_producer_and_sink_through_pgbouncer_store_exactly_the_input(pgbouncer, kafka_env, unique, tmp_path):
    env = service_env(kafka_env, database_url=pgbouncer["app_"], axes="1-3", log_level="INFO")
    env |= {"MIGRATION_DATABASE_URL": pgbouncer["owner_"], "SINK_GROUP_ID": f"sink-{unique}"}
    watch = create_engine(pgbouncer[""])
    try:
        expected, rows = stream_through(env, watch, tmp_path, fleet=(ROBOTS, 9, TICK_S, START, AXES, READINGS))
    finally:
        watch.dispose()
    assert "refuses startup options" in (tmp_path / "sink.log").read_text()
    assert len(rows) == len(expected) and set(rows) == expected
