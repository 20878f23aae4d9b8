"""Every service as a separate process against the real Kafka and PostgreSQL: each answers /readyz with 200
once ready, /livez with 200, and /metrics in Prometheus' text format with its named series moving. The
endpoints are asked with the real curl when the machine has it (as an operator or Prometheus would), else
with urllib.

The notifier delivers the stack's alerts to a webhook receiver of the test's own; the API is asked for
alerts with a token made by its own commands (``python -m api add-user`` / ``issue-token``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]

SERVICES = ("producer", "consumer_db", "consumer_alerts", "dashboard", "notifier", "api")
CURL = shutil.which("curl")


def moving(readings: str) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Per service: series that must be there with a value above zero once the stack has run for a while."""
    return {
        "producer": [
            ("axiswatch_producer_rows_in_total", {}),
            ("axiswatch_producer_messages_out_total", {"topic": readings}),
            ("axiswatch_producer_push_seconds_count", {}),
        ],
        "consumer_db": [
            ("axiswatch_consumer_db_messages_in_total", {"topic": readings}),
            ("axiswatch_consumer_db_written_total", {"kind": "readings_new"}),
            ("axiswatch_consumer_db_transaction_seconds_count", {}),
            ("axiswatch_consumer_db_batch_seconds_count", {}),
        ],
        "consumer_alerts": [
            ("axiswatch_consumer_alerts_messages_in_total", {}),
            ("axiswatch_consumer_alerts_alert_events_total", {"state": "open"}),
            ("axiswatch_consumer_alerts_batch_seconds_count", {}),
            ("axiswatch_consumer_alerts_snapshot_write_seconds_count", {}),
        ],
        "dashboard": [
            ("axiswatch_dashboard_messages_in_total", {"topic": readings}),
            ("axiswatch_dashboard_ingest_seconds_count", {}),
        ],
        "notifier": [
            ("axiswatch_notifier_messages_in_total", {}),
            ("axiswatch_notifier_raised_total", {"channel": "hook", "change": "open"}),
            ("axiswatch_notifier_deliveries_total", {"channel": "hook", "outcome": "sent"}),
        ],
        "api": [("axiswatch_api_requests_total", {"route": "/v1/alerts", "status": "200"})],
    }


# Gauges that must be exposed (their value may rightly be 0).
PRESENT = {
    "consumer_db": ["axiswatch_consumer_db_lag_messages"],
    "consumer_alerts": ["axiswatch_consumer_alerts_lag_messages"],
    "dashboard": ["axiswatch_dashboard_sessions", "axiswatch_dashboard_lag_messages"],
    "notifier": ["axiswatch_notifier_lag_messages"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, *headers: str) -> tuple[int, str]:
    """Status and body; OSError when nothing listens."""
    if CURL:
        given = [arg for header in headers for arg in ("--header", header)]
        done = subprocess.run(
            [CURL, "--silent", "--max-time", "5", *given, "--write-out", "\n%{http_code}", url],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:  # 7: connection refused, 28: timed out
            raise ConnectionError(f"curl {url}: exit {done.returncode}")
        body, _, status = done.stdout.rpartition("\n")
        return int(status), body
    request = urllib.request.Request(url, headers=dict(h.split(": ", 1) for h in headers))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def total(found, name: str, labels: dict[str, str]) -> float:
    """Sum over the samples of ``name`` whose labels include ``labels`` (e.g. every severity)."""
    return sum(
        value
        for sample_name, sample_labels, value in found
        if sample_name == name and labels.items() <= sample_labels.items()
    )


class Receiver(BaseHTTPRequestHandler):
    """The notifier's webhook: takes every POST with 200 and keeps its path in the server's ``posted``."""

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.posted.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:  # quiet: the test's output is the services' logs
        pass


def test_every_service_serves_its_series_and_says_when_it_is_ready(kafka_env, pg_url, tmp_path, unique):
    ports = {name: free_port() for name in SERVICES}
    api_port = free_port()
    expected = moving(kafka_env["readings_topic"])
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    receiver.posted = []
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        f'channels:\n  - {{name: hook, kind: webhook, url: "http://127.0.0.1:{receiver.server_port}/hook", '
        "secret_env: TEST_WEBHOOK_SECRET}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    env |= {key.upper(): str(value) for key, value in kafka_env.items()} | {
        "DATABASE_URL": pg_url,
        "PRODUCER_METRICS_PORT": str(ports["producer"]),
        "SINK_METRICS_PORT": str(ports["consumer_db"]),
        "ALERTS_METRICS_PORT": str(ports["consumer_alerts"]),
        "DASHBOARD_PORT": str(ports["dashboard"]),
        "NOTIFIER_METRICS_PORT": str(ports["notifier"]),
        "NOTIFIER_CONFIG": str(channels),
        "NOTIFIER_GROUP_ID": f"notifier-{unique}",
        "TEST_WEBHOOK_SECRET": f"secret-{unique}",
        "API_METRICS_PORT": str(ports["api"]),
        "API_PORT": str(api_port),
        "API_HOST": "127.0.0.1",
        "MODEL_PATH": str(REPO / "consumer_alerts/models/synthetic-fleet.json"),
        "STATE_PATH": str(tmp_path / "alerts-state.json"),
        "SNAPSHOT_INTERVAL_S": "2",
    }
    extra = {"producer": ["--synthetic", "--robots", "2", "--faults", "--fault-period", "600", "--speed", "100"]}
    processes: dict[str, subprocess.Popen] = {}
    logs = {name: tmp_path / f"{name}.log" for name in SERVICES}
    try:
        for name in ("consumer_db", "consumer_alerts", "dashboard", "notifier", "api", "producer"):  # consumers first
            with open(logs[name], "w") as log:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", name, *extra.get(name, [])],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

        def all_ready() -> bool:
            return all(_answer(base[name] + "/readyz") == 200 for name in SERVICES)

        wait(all_ready, 120, "every /readyz to answer 200", processes, logs)
        assert all(get(base[name] + "/livez")[0] == 200 for name in SERVICES)
        token = api_token(env)
        status, alerts = get(f"http://127.0.0.1:{api_port}/v1/alerts", f"Authorization: Bearer {token}")
        assert status == 200 and '"alerts"' in alerts

        def moved() -> bool:
            found = {name: samples(get(base[name] + "/metrics")[1]) for name in SERVICES}
            return all(total(found[name], series, labels) > 0 for name in SERVICES for series, labels in expected[name])

        wait(moved, 150, "every named series to move", processes, logs)
        for name, gauges in PRESENT.items():
            exposed = {sample_name for sample_name, _, _ in samples(get(base[name] + "/metrics")[1])}
            assert set(gauges) <= exposed, f"{name} does not expose {set(gauges) - exposed}"
        api_metrics = samples(get(base["api"] + "/metrics")[1])
        assert total(api_metrics, "axiswatch_api_requests_total", {"route": "/v1/alerts", "status": "200"}) == 1
        delivered = total(samples(get(base["notifier"] + "/metrics")[1]), *expected["notifier"][-1])
        assert 1 <= delivered <= receiver.posted.count("/hook")  # a delivery is counted once it reached the receiver
    finally:
        receiver.shutdown()
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                pytest.fail(f"{name} did not stop within 30 s of SIGTERM")


def api_token(env: dict[str, str]) -> str:
    """A viewer's token, made by the API's own commands (consumer_db, ready, has migrated the tables)."""
    command = [sys.executable, "-m", "api"]
    user = {**env, "API_USER_PASSWORD": "metrics-viewer-password"}
    subprocess.run([*command, "add-user", "metrics", "--role", "viewer"], cwd=REPO, env=user, check=True, timeout=60)
    issued = subprocess.run(
        [*command, "issue-token", "metrics"], cwd=REPO, env=env, check=True, timeout=60, capture_output=True, text=True
    )
    return issued.stdout.strip().splitlines()[-1]


def _answer(url: str) -> int | None:
    try:
        return get(url)[0]
    except OSError:  # not listening yet
        return None


def wait(check, timeout_s: float, what: str, processes: dict[str, subprocess.Popen], logs: dict[str, Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dead = [name for name, process in processes.items() if process.poll() is not None]
        if not dead and check():
            return
        if dead:
            break
        time.sleep(0.5)
    tails = "\n".join(f"--- {name}\n{path.read_text()[-1500:]}" for name, path in logs.items())
    pytest.fail(f"waiting for {what}: timed out or a service exited ({dead})\n{tails}")
