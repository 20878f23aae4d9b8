"""The services over a PostgreSQL that takes TLS only (issue 24), as a managed one does: the repo's own
throwaway server (scripts/postgres.sh with AXISWATCH_PG_SSL_*) with a certificate from a CA made at test time,
scram-sha-256 passwords, and DATABASE_URL with ``sslmode=verify-full`` and the CA. A plaintext client and a
client that does not trust the CA are refused; the producer and consumer_db (as the least-privilege role,
migrations as the owner) run through it and store exactly the input, every connection of theirs encrypted.
"""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests import secured_services
from tests.fault_support import service_env, stream_through

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[2]
START = datetime(2024, 3, 1, 8, tzinfo=UTC)
ROBOTS, TICK_S, READINGS, AXES = 3, 2.0, 1500, [1, 2, 3]


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory):
    with secured_services.tls_postgres(tmp_path_factory.mktemp("tls-postgres")) as urls:
        yield urls


def connects(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("select ssl from pg_stat_ssl where pid = pg_backend_pid()")).scalar_one()
    except OperationalError:
        return False
    finally:
        engine.dispose()


def test_only_tls_with_the_right_ca_and_scram_passwords_get_in(tls_postgres):
    superuser = tls_postgres[""]
    assert "sslmode=verify-full" in superuser
    assert connects(superuser) is True  # and the session is encrypted
    assert not connects(re.sub(r"\?.*", "?sslmode=disable", superuser))  # pg_hba: TCP without TLS is rejected
    other_ca = re.sub(r"sslrootcert=[^&]*", "sslrootcert=" + str(REPO / "tests" / "tls_support.py"), superuser)
    assert not connects(other_ca)  # a CA file that does not sign the server's certificate
    engine = create_engine(superuser)
    try:
        with engine.connect() as conn:
            hashes = conn.execute(text("select rolname, rolpassword from pg_authid where rolname like 'axiswatch%'"))
            methods = {name: password.split("$", 1)[0] for name, password in hashes}
    finally:
        engine.dispose()
    assert methods == dict.fromkeys(("axiswatch", "axiswatch_owner", "axiswatch_app"), "SCRAM-SHA-256")


def test_producer_and_sink_through_tls_store_exactly_the_input(tls_postgres, kafka_env, unique, tmp_path):
    env = service_env(kafka_env, database_url=tls_postgres["app_"], axes="1-3", log_level="INFO")
    env |= {"MIGRATION_DATABASE_URL": tls_postgres["owner_"], "SINK_GROUP_ID": f"sink-{unique}"}

    def only_tls(conn):
        sink_sessions = conn.execute(
            text(
                "select s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)"
                " where a.usename = 'axiswatch_app' and a.datname = current_database()"
            )
        ).scalars()
        assert set(sink_sessions) == {True}  # the sink is connected, and only over TLS

    watch = create_engine(tls_postgres[""])
    try:
        fleet = (ROBOTS, 5, TICK_S, START, AXES, READINGS)
        expected, rows = stream_through(env, watch, tmp_path, fleet=fleet, while_running=only_tls)
    finally:
        watch.dispose()
    assert len(rows) == len(expected) and set(rows) == expected
