"""consumer_alerts' /readyz in a group of real processes on the real broker: it says which partitions the instance
holds, once their state is restored. Two instances on a 1-partition readings topic: one holds partition 0, the
other none, and both are ready (a group of more instances than partitions keeps the others idle, and healthy);
when the first stops, the other takes the partition over, and says so."""

import signal
import socket
import urllib.error
import urllib.request

import pytest

from tests.fault_support import Service, poll, service_env

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readyz(port: int) -> tuple[int, str] | None:
    """Status and body of the instance's /readyz; None while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()
    except OSError:
        return None


def test_an_instance_holding_no_partition_is_ready_and_says_so_until_it_takes_one_over(kafka_env, unique, tmp_path):
    kafka_env = {**kafka_env, "topic_partitions": 1}
    readings = kafka_env["readings_topic"]
    ports = {name: free_port() for name in "ab"}
    instances = {
        name: Service(
            "consumer_alerts",
            service_env(
                kafka_env,
                alerts_group_id=f"alerts-{unique}",
                alerts_metrics_port=port,
                health=False,
                state_path="",
                log_level="INFO",
            ),
            tmp_path / f"{name}.log",
        )
        for name, port in ports.items()
    }
    holds = (200, f"holding partitions [0] of {readings}, their state restored")
    holds_none = (
        200,
        f"holding no partition of {readings}: the group handed this instance none (more instances than partitions?)",
    )
    try:
        running = tuple(instances.values())

        def both_settled() -> dict[str, tuple[int, str]] | None:
            answers = {name: readyz(port) for name, port in ports.items()}
            return answers if sorted(answers.values(), key=str) == sorted([holds, holds_none], key=str) else None

        answers = poll(both_settled, "one instance holding partition 0, the other none", timeout=120, services=running)
        holder = next(name for name, answer in answers.items() if answer == holds)
        standby = "b" if holder == "a" else "a"
        assert instances[holder].stop(signal.SIGTERM) == 0, instances[holder].tail()
        poll(
            lambda: readyz(ports[standby]) == holds,
            f"{standby} holding partition 0 once {holder} left",
            timeout=60,
            services=(instances[standby],),
        )
    finally:
        for service in instances.values():
            if service.process.poll() is None:
                service.stop(signal.SIGKILL)
