"""Run every benchmark (`make bench`), or the ones named: `python -m bench [name ...]`.

Each runs in a process group of its own. SIGINT or SIGTERM to the runner is passed on to it as one SIGINT, at
which every benchmark stops what it started in its ``finally`` (KeyboardInterrupt, or asyncio's cancel); it is
waited for, and no further benchmark runs (docs/benchmarks.md, "How to run them"). Before, SIGTERM ended the
runner alone and left the benchmark and its services running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"__init__", "__main__", "results"}
PASSED_ON = (signal.SIGINT, signal.SIGTERM)


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS and not p.stem.startswith("_"))


def run_passing_signals(argv: list[str]) -> tuple[int, signal.Signals | None]:
    """``argv``'s exit code, and the first signal passed on to it (None if none came)."""
    received: list[signal.Signals] = []
    started: list[subprocess.Popen] = []
    unsent = [0]  # signals that came before the child was there

    def pass_on(signum: int, _frame) -> None:
        received.append(signal.Signals(signum))
        if started:
            started[0].send_signal(signal.SIGINT)
        else:
            unsent[0] += 1

    # Before the child starts, so that no signal in between is lost; exec resets them to the default in the child.
    previous = {sig: signal.signal(sig, pass_on) for sig in PASSED_ON}
    try:
        started.append(subprocess.Popen(argv, cwd=HERE.parent, process_group=0))
        for _ in range(unsent[0]):
            started[0].send_signal(signal.SIGINT)
        return started[0].wait(), (received[0] if received else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(available())}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n=== bench.{name}", flush=True)
        code, stopped_by = run_passing_signals([sys.executable, "-m", f"bench.{name}"])
        if stopped_by is not None:
            print(f"\nbench.{name} stopped at {stopped_by.name}; no further benchmark run", file=sys.stderr)
            return 128 + stopped_by
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
