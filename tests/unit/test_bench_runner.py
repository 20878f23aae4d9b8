"""``python -m bench`` stopped by SIGTERM (``make bench`` under scripts/with-services.sh) or by Ctrl+C: the
benchmark it runs gets one SIGINT, stops what it started in its ``finally``, and is waited for.

Before, SIGTERM ended the runner alone: the benchmark and the services it had started ran on (and lost their
broker and database when with-services.sh stopped them). At Ctrl+C the runner killed the benchmark 0.25 s after
the terminal's SIGINT (subprocess.run's way), whatever it was still stopping. The benchmark here is a plain
Python script that starts a process of its own, as ``bench.ingest`` or ``bench.dashboard_sessions`` do.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARK = """
import os, subprocess, sys, time
from pathlib import Path

out = Path(sys.argv[1])
(out / "benchmark.pid").write_text(str(os.getpid()))
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
(out / "helper.pid").write_text(str(helper.pid))
try:
    (out / "ready").write_text("")
    time.sleep(600)
except KeyboardInterrupt:
    (out / "interrupted").write_text("")
finally:
    helper.terminate()
    helper.wait()
    (out / "cleaned").write_text("")
"""
RUNNER = (
    "import os, sys; from pathlib import Path; from bench.__main__ import run_passing_signals; "
    "Path(sys.argv[-1], 'runner.pid').write_text(str(os.getpid())); "
    "code, sig = run_passing_signals(sys.argv[1:]); print(code, sig and sig.name)"
)
# How the runner is started, and how it is stopped.
WAYS = {
    "SIGTERM to the runner": ([], signal.SIGTERM, os.kill),
    "Ctrl+C: SIGINT to its process group": ([], signal.SIGINT, lambda pid, sig: os.killpg(os.getpgid(pid), sig)),
    # SIGINT ignored, as in every background job of a shell without job control (a CI script's `cmd &`): the
    # benchmark must still get a SIGINT that is not ignored.
    "SIGTERM to a runner a shell started in the background": (
        ["bash", "-c", '"$@" & wait', "bash"],
        signal.SIGTERM,
        os.kill,
    ),
}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_stopped_runner_has_its_benchmark_clean_up_and_waits_for_it(tmp_path, way):
    shell, sig, send = WAYS[way]
    script = tmp_path / "benchmark.py"
    script.write_text(BENCHMARK)
    # A process group of its own, as a shell's foreground job: what a terminal's Ctrl+C reaches.
    started = subprocess.Popen(
        [*shell, sys.executable, "-c", RUNNER, sys.executable, str(script), str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    benchmark = helper = None
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert started.poll() is None and time.monotonic() < deadline, "the benchmark did not start"
            time.sleep(0.05)
        benchmark, helper = (int((tmp_path / f"{name}.pid").read_text()) for name in ("benchmark", "helper"))
        send(int((tmp_path / "runner.pid").read_text()), sig)
        out, _ = started.communicate(timeout=60)
    finally:
        if started.poll() is None:
            os.killpg(started.pid, signal.SIGKILL)
        left = [pid for pid in (benchmark, helper) if pid is not None and alive(pid)]
        for pid in left:  # not left to run on after the test
            os.kill(pid, signal.SIGKILL)
        assert not left, "the benchmark or its own process was left running"
    assert out.split() == ["0", sig.name]
    assert (tmp_path / "interrupted").exists() and (tmp_path / "cleaned").exists()
