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
import subprocess, sys, time
from pathlib import Path

out = Path(sys.argv[1])
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
    "import sys; from bench.__main__ import run_passing_signals; "
    "code, sig = run_passing_signals(sys.argv[1:]); print(code, sig and sig.name)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("how", ["SIGTERM to the runner", "Ctrl+C (SIGINT to its process group)"])
def test_a_stopped_runner_has_its_benchmark_clean_up_and_waits_for_it(tmp_path, how):
    script = tmp_path / "benchmark.py"
    script.write_text(BENCHMARK)
    # A process group of its own, as a shell's foreground job: what a terminal's Ctrl+C reaches.
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, sys.executable, str(script), str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    helper = None
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert runner.poll() is None and time.monotonic() < deadline, "the benchmark did not start"
            time.sleep(0.05)
        helper = int((tmp_path / "helper.pid").read_text())
        if how.startswith("SIGTERM"):
            runner.send_signal(signal.SIGTERM)
        else:
            os.killpg(runner.pid, signal.SIGINT)
        out, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
        if helper is not None and alive(helper):
            os.kill(helper, signal.SIGKILL)
            pytest.fail("the benchmark's own process was left running")
    assert out.split() == ["0", "SIGTERM" if how.startswith("SIGTERM") else "SIGINT"]
    assert (tmp_path / "interrupted").exists() and (tmp_path / "cleaned").exists()
