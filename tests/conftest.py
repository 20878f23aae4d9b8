"""Session fixtures for the real services, and per-test isolation (own topics, own database).

Where the services come from, in order: ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` when set (``make test``
starts the repo's own broker and PostgreSQL and sets them); else testcontainers when a Docker engine answers;
else the integration tests skip with the reason, except under ``CI=true`` where a missing service fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_EXPORT = SHARED_DATA / "RMBR4-2_export_test.csv"


def service_missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def tcp_answers(host_ports: str) -> bool:
    for host_port in host_ports.split(","):
        host, _, port = host_port.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
                return True
        except OSError:
            continue
    return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if servers:
        if not tcp_answers(servers):
            service_missing(f"KAFKA_BOOTSTRAP_SERVERS={servers} does not answer")
        yield servers
        return
    if not docker_answers():
        service_missing(
            "no Kafka: KAFKA_BOOTSTRAP_SERVERS is unset and no Docker engine answers "
            "(run `make test`, which starts the repo's own broker, or scripts/with-services.sh)"
        )
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        if make_url(url).get_backend_name() != "postgresql":
            service_missing(f"DATABASE_URL is not PostgreSQL ({make_url(url).get_backend_name()})")
        yield url
        return
    if not docker_answers():
        service_missing(
            "no PostgreSQL: DATABASE_URL is unset and no Docker engine answers "
            "(run `make test`, which starts the repo's own PostgreSQL, or scripts/with-services.sh)"
        )
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver="psycopg2") as pg:
        yield pg.get_connection_url()


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of the test's own, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - the reason goes into the skip/fail message
        admin.dispose()
        service_missing(f"PostgreSQL at {make_url(postgres_admin_url).render_as_string()} refused: {exc}")
    url = make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[object]:
    """An engine on the test's own PostgreSQL database, migrated to the newest schema."""
    from common.store.db import make_engine
    from consumer_db.migrate import migrate

    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'axiswatch.sqlite'}"


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka_env(kafka_bootstrap: str, unique: str) -> dict[str, str]:
    """Settings overrides that give the test its own topics and consumer-group prefix on the real broker."""
    return {
        "bus": "kafka",
        "kafka_bootstrap_servers": kafka_bootstrap,
        "readings_topic": f"readings-{unique}",
        "alerts_topic": f"alerts-{unique}",
        "dead_letter_topic": f"dead-{unique}",
        "health_topic": f"health-{unique}",
        "maintenance_topic": f"maintenance-{unique}",
        "alerts_state_topic": f"alerts-state-{unique}",  # read by consumer_alerts only; the others ignore it
        "topic_partitions": 3,
    }


@pytest.fixture
def real_export() -> Path:
    if not REAL_EXPORT.exists():
        pytest.skip(f"the real export is not at {REAL_EXPORT} (it lives in ../shared/data)")
    return REAL_EXPORT


@pytest.fixture
def artifacts_dir() -> Path:
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    return out


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's headless Chromium driven by Playwright (never `playwright install`: no browser downloads).
    Missing: skip with the reason, except under CI=true, where that is a failure. Module-scoped, not
    session-scoped: while Playwright's sync API is open an event loop counts as running in this thread,
    and every asyncio test after it would fail with "cannot be called from a running event loop"."""
    if not CHROMIUM.exists():
        service_missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        service_missing(f"Playwright is not installed ({exc})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
