"""Secured servers of a test's own, as managed ones are: Kafka with SASL_SSL (SCRAM) and a TLS-only
PostgreSQL with scram-sha-256, each with a certificate from a CA made at test time. Context managers the
tests' fixtures wrap; a server that cannot run here skips (fails under CI=true) with the reason."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path

from tests.conftest import service_missing
from tests.fault_support import private_kafka
from tests.tls_support import make_server_tls, openssl_missing

REPO = Path(__file__).resolve().parents[1]
KAFKA_USER, KAFKA_MECHANISM = "axiswatch", "SCRAM-SHA-512"


@contextmanager
def secured_kafka(directory: Path) -> Iterator[dict[str, str]]:
    """A broker with only a SASL_SSL listener; yields the services' settings to reach it (lower-case names)."""
    reason = openssl_missing()
    if reason:
        service_missing(reason)
    tls = make_server_tls(directory / "tls")
    password = secrets.token_urlsafe(24)
    password_file = directory / "kafka-password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    with private_kafka(
        directory / "var",
        AXISWATCH_KAFKA_SECURITY="SASL_SSL",
        AXISWATCH_KAFKA_SSL_CERTFILE=str(tls.cert),
        AXISWATCH_KAFKA_SSL_KEYFILE=str(tls.key),
        AXISWATCH_KAFKA_SSL_CAFILE=str(tls.ca),
        AXISWATCH_KAFKA_SASL_MECHANISM=KAFKA_MECHANISM,
        AXISWATCH_KAFKA_SASL_USERNAME=KAFKA_USER,
        AXISWATCH_KAFKA_SASL_PASSWORD_FILE=str(password_file),
    ) as broker:
        yield {
            "kafka_bootstrap_servers": broker.bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": KAFKA_MECHANISM,
            "kafka_sasl_username": KAFKA_USER,
            "kafka_sasl_password": password,
            "kafka_ssl_cafile": str(tls.ca),
        }


def postgres_missing() -> str | None:
    if os.environ.get("AXISWATCH_PG_BINDIR") or glob("/usr/lib/postgresql/*/bin/pg_ctl") or shutil.which("pg_ctl"):
        return None
    return "no PostgreSQL server binaries for a private server (apt-get install postgresql)"


@contextmanager
def tls_postgres(directory: Path) -> Iterator[dict[str, str]]:
    """A PostgreSQL that takes TCP clients over TLS only (scripts/postgres.sh with AXISWATCH_PG_SSL_*); yields
    its URLs, with sslmode=verify-full and the CA: "" the superuser, "owner_" the schema's owner (migrations),
    "app_" the services' role."""
    reason = postgres_missing() or openssl_missing()
    if reason:
        service_missing(reason)
    tls = make_server_tls(directory / "tls")
    env = {
        **os.environ,
        "AXISWATCH_VAR_DIR": str(directory / "var"),
        "AXISWATCH_PG_SSL_CERTFILE": str(tls.cert),
        "AXISWATCH_PG_SSL_KEYFILE": str(tls.key),
        "AXISWATCH_PG_SSL_CAFILE": str(tls.ca),
    }
    script = [str(REPO / "scripts" / "postgres.sh")]
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=120)
    try:
        if started.returncode != 0:
            service_missing(f"scripts/postgres.sh start with TLS failed:\n{started.stderr[-2000:]}")
        state = directory / "var" / "postgres"
        yield {role: (state / f"{role}database_url").read_text().strip() for role in ("", "owner_", "app_")}
    finally:
        subprocess.run([*script, "stop", "--clean"], env=env, capture_output=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port: int) -> bool:
    """Whether a service's /readyz answers 200 (connected to Kafka and the database, subscribed)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return answer.status == 200
    except OSError:  # refused while starting, or HTTP 503 (HTTPError is an OSError)
        return False
