"""A benchmark stopped with SIGTERM (a CI job cancelled, ``timeout``, ``kill``) stops the services it started:
before, Python's default ended it at once and the services kept running, reading and writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
# a tiny run that would go on for ten minutes: one robot, no history, one dashboard session
RUNS = {
    "pipeline_latency": ["--robots", "1", "--seconds", "600"],
    "load_curve": ["--robots", "1", "--hold-s", "600", "--name", "test_bench_stop"],
}
SERVICES = ("consumer_db", "consumer_alerts", "dashboard", "producer")


def state(pid: int) -> str | None:
    """The process's state letter (``Z``: exited, not yet reaped), None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def running(pid: int) -> bool:
    return state(pid) not in (None, "Z")


def children(pid: int) -> dict[int, str]:
    """The running processes whose parent is ``pid``: their pid and command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent == pid and running(int(entry.name)):
            found[int(entry.name)] = cmdline
    return found


def services_of(pid: int, timeout_s: float) -> dict[int, str]:
    """The benchmark's services once all four run (the producer starts last, when the sessions are open)."""
    deadline, found = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        found = children(pid)
        if all(any(f"-m {name} " in cmd for cmd in found.values()) for name in SERVICES):
            return found
        time.sleep(0.5)
    pytest.fail(f"the benchmark's services did not all start within {timeout_s:g} s: {found}")


@pytest.mark.parametrize("benchmark", sorted(RUNS))
def test_sigterm_stops_the_services(benchmark, kafka_bootstrap, postgres_admin_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": postgres_admin_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    argv = [sys.executable, "-m", f"bench.{benchmark}", *RUNS[benchmark], "--history-s", "0", "--sessions", "1"]
    log = tmp_path / "bench.log"
    with open(log, "w") as out:
        bench = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        services = services_of(bench.pid, 240)
        bench.send_signal(signal.SIGTERM)
        bench.wait(150)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    left = {pid: cmd for pid, cmd in services.items() if running(pid)}
    for pid in left:  # not left to run on after the test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after the benchmark ended: {left}\n{log.read_text()[-3000:]}"
