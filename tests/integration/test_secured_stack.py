"""The whole stack over secured servers at once, as in a plant with managed Kafka and PostgreSQL (issue 24):
Kafka with only a SASL_SSL listener (SCRAM-SHA-512) and a PostgreSQL that takes TLS only (verify-full,
scram-sha-256), certificates from CAs made at test time. The four services run as processes configured by
the documented settings alone; the services connect as the least-privilege role, the migrations as the owner.
Every service gets ready, the producer's readings are all confirmed and stored exactly once, the dashboard's
page answers, every database session of the services is encrypted, and no log holds a password.
"""

import signal
import urllib.request
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from producer.synthetic import synthetic_fleet
from tests import secured_services
from tests.fault_support import Service, assert_exactly, poll, service_env, stored, stored_rows
from tests.secured_services import free_port, ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[2]
START = datetime(2024, 3, 1, 8, tzinfo=UTC)
ROBOTS, TICK_S, READINGS, AXES = 3, 2.0, 1500, [1, 2, 3]


def test_the_four_services_over_sasl_ssl_kafka_and_tls_postgres(tmp_path, unique):
    with (
        secured_services.secured_kafka(tmp_path / "kafka") as kafka,
        secured_services.tls_postgres(tmp_path / "postgres") as urls,
    ):
        settings = {
            **kafka,
            "readings_topic": f"readings-{unique}",
            "alerts_topic": f"alerts-{unique}",
            "dead_letter_topic": f"dead-{unique}",
            "topic_partitions": 3,
        }
        env = service_env(settings, database_url=urls["app_"], axes="1-3", log_level="INFO")
        ports = {"consumer_db": free_port(), "consumer_alerts": free_port(), "dashboard": free_port()}
        services = {
            "consumer_db": Service(
                "consumer_db",
                {
                    **env,
                    "MIGRATION_DATABASE_URL": urls["owner_"],
                    "SINK_GROUP_ID": f"sink-{unique}",
                    "SINK_METRICS_PORT": str(ports["consumer_db"]),
                },
                tmp_path / "consumer_db.log",
            ),
            "consumer_alerts": Service(
                "consumer_alerts",
                {
                    **env,
                    "ALERTS_METRICS_PORT": str(ports["consumer_alerts"]),
                    "MODEL_PATH": str(REPO / "consumer_alerts" / "models" / "synthetic-fleet.json"),
                    "STATE_PATH": str(tmp_path / "alerts-state.json"),
                },
                tmp_path / "consumer_alerts.log",
            ),
            "dashboard": Service(
                "dashboard", {**env, "DASHBOARD_PORT": str(ports["dashboard"])}, tmp_path / "dashboard.log"
            ),
        }
        watch = create_engine(urls[""])
        try:
            poll(lambda: stored(watch)[0] == 0, "the sink's tables", services=tuple(services.values()))
            poll(
                lambda: all(ready(port) for port in ports.values()),
                "every consumer ready",
                timeout=120,
                every=0.5,
                services=tuple(services.values()),
            )
            services["producer"] = Service(
                "producer",
                {**env, "PRODUCER_METRICS_PORT": str(free_port())},
                tmp_path / "producer.log",
                *("--synthetic", "--robots", str(ROBOTS), "--seed", "11", "--tick-seconds", str(TICK_S)),
                *("--max-speed", "--start-time", START.isoformat(), "--limit", str(READINGS)),
            )
            assert services["producer"].process.wait(90) == 0, services["producer"].tail()
            poll(
                lambda: stored(watch)[0] == len(AXES) * READINGS,
                "every row",
                timeout=90,
                services=(services["consumer_db"],),
            )
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['dashboard']}/", timeout=30) as page:
                assert page.status == 200
            with watch.connect() as conn:
                encrypted = conn.execute(
                    text(
                        "select s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)"
                        " where a.usename = 'axiswatch_app' and a.datname = current_database()"
                    )
                ).scalars()
                assert set(encrypted) == {True}  # the services are connected, and only over TLS
                rows = stored_rows(conn)
        finally:
            for service in services.values():
                if service.process.poll() is None:
                    service.stop(signal.SIGTERM)
            watch.dispose()
    assert f"{READINGS} readings confirmed" in services["producer"].tail(5000)
    fleet = synthetic_fleet(ROBOTS, seed=11, tick_seconds=TICK_S, start=START, axes=AXES)
    expected = {(r.robot_id, r.ts, axis, r.currents[axis]) for r in islice(fleet, READINGS) for axis in AXES}
    assert_exactly(rows, expected)
    secrets = [kafka["kafka_sasl_password"], *(make_url(url).password for url in urls.values())]
    for service in services.values():
        log = service.log.read_text()
        assert not [secret for secret in secrets if secret in log], f"{service.module} logged a password"
