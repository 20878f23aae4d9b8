"""`make up` / `make down` as a user meets them: the repo's own Kafka and PostgreSQL plus the four services
as separate processes (scripts/local-stack.sh), end to end: readings flow from the producer through Kafka
into PostgreSQL and alerts, and the dashboard serves them."""

import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import service_missing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "scripts" / "local-stack.sh"
READINGS = 3000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, *, timeout_s: float, what: str, logs: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception:  # noqa: BLE001 - not ready yet; the deadline decides
            result = None
        if result:
            return result
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tails}")


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped; only its parent has not looked yet


def scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def test_make_up_runs_the_pipeline_as_separate_processes_and_make_down_stops_it(tmp_path):
    if not (shutil.which("java") and shutil.which("mvn")):
        service_missing("java and mvn are needed to start the repo's own Kafka broker")
    port, api_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")  # the stack brings its own
    } | {
        "AXISWATCH_VAR_DIR": str(tmp_path / "stack"),
        "PYTHON": sys.executable,
        "DASHBOARD_PORT": str(port),
        # free ports: the defaults (9101-9103) may be another stack's on a shared machine
        "PRODUCER_METRICS_PORT": str(free_port()),
        "SINK_METRICS_PORT": str(free_port()),
        "ALERTS_METRICS_PORT": str(free_port()),
        "API_PORT": str(api_port),
        "API_METRICS_PORT": str(free_port()),
        "MODEL_PATH": str(REPO / "consumer_alerts/models/synthetic-fleet.json"),
        "STATE_PATH": str(tmp_path / "alerts-state.json"),
        "PRODUCER_ARGS": f"--synthetic --robots 2 --faults --fault-period 600 --speed 100 --limit {READINGS}",
    }
    logs = tmp_path / "stack" / "run"
    services: dict[str, int] = {}
    try:
        # Into a file, not a pipe: the servers it leaves running would hold a pipe open.
        with open(tmp_path / "up.log", "w") as out:
            up = subprocess.run(["bash", str(STACK), "up"], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300)
        said = (tmp_path / "up.log").read_text()
        assert up.returncode == 0, said[-3000:]
        assert f"http://localhost:{port}/" in said
        status = subprocess.run(["bash", str(STACK), "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 0, status.stdout
        services = {name: int(pid) for name, pid in re.findall(r"(\w+) running \(pid (\d+)\)", status.stdout)}
        assert sorted(services) == ["api", "consumer_alerts", "consumer_db", "dashboard", "producer"], status.stdout
        commands = {name: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for name, pid in services.items()}
        assert all(cmd[1:3] == [b"-m", name.encode()] for name, cmd in commands.items()), commands  # the service itself
        exports = subprocess.run(["bash", str(STACK), "env"], env=env, capture_output=True, text=True).stdout
        database_url = exports.split("DATABASE_URL='")[1].split("'")[0]
        engine = create_engine(database_url)
        wait_for(
            lambda: scalar(engine, "select count(distinct (robot_id, ts)) from readings_fact") == READINGS,
            timeout_s=180,
            what=f"{READINGS} readings in PostgreSQL",
            logs=logs,
        )
        wait_for(lambda: scalar(engine, "select count(*) from alerts"), timeout_s=120, what="an alert event", logs=logs)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            health = json.load(response)
        assert health["newest_reading"] is not None
        # The dashboard needs sign-in; a user made with the documented command signs in through the form.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert page.status == 200 and "/login" in page.url
        added = subprocess.run(
            [sys.executable, "-m", "api", "add-user", "otto", "--role", "operator"],
            env={**env, "DATABASE_URL": database_url, "API_USER_PASSWORD": "otto-stack-password"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
        assert "bokeh" in sign_in(f"http://127.0.0.1:{port}/", "otto", "otto-stack-password").lower()
        assert scalar(engine, "select count(*) from readings_fact where axis_id >= 9 and amps is not null") == 0
        wait_for(lambda: _answers(f"http://127.0.0.1:{api_port}/readyz"), timeout_s=30, what="the API ready", logs=logs)
        engine.dispose()
    finally:
        down = subprocess.run(
            ["bash", str(STACK), "down", "--clean"], env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    left = [name for name, pid in services.items() if running(pid)]
    assert not left, f"still running after make down: {left}"
    assert (
        "kafka stopped"
        in subprocess.run(["bash", str(STACK), "status"], env=env, capture_output=True, text=True).stdout
    )


def sign_in(url: str, name: str, password: str) -> str:
    """The dashboard's page after signing in through its login form (cookies kept, as a browser does)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(url, timeout=10) as login:
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', login.read().decode()).group(1)
        form = urllib.parse.urlencode({"_xsrf": xsrf, "name": name, "password": password}).encode()
        target = login.url
    with opener.open(urllib.request.Request(target, data=form), timeout=30) as page:
        assert "/login" not in page.url
        return page.read().decode()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False
