"""How long consumer_alerts' snapshot holds up the readings: 200 robots of the synthetic fleet with full
windows (z-score baseline and the residual model's window on 14 axes), the snapshot written three ways
side by side in one run:

- v2 (before): the whole state in one go with the windows as JSON numbers (reproduced from the same
  detector states), blocking the loop for all of it;
- v3 in one go: the windows as base64 float64;
- v3 robot by robot (the service): the longest slice the loop gives it, the slices, and the CPU in all.

    .venv/bin/python -m bench.alerts_snapshot [--robots 200] [--readings-per-robot 1500] [--runs 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from datetime import UTC, datetime

from bench.results import write_results
from consumer_alerts import engine_state
from consumer_alerts.checkpoint import SLICE_S, Snapshot
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.model import AlertModel
from producer.synthetic import synthetic_fleet

MODEL = "consumer_alerts/models/synthetic-fleet.json"


def fed_engine(robots: int, per_robot: int) -> DetectorEngine:
    engine = DetectorEngine(EngineConfig(), AlertModel.load(MODEL))
    fleet = synthetic_fleet(robots, seed=1, start=datetime(2024, 1, 1, tzinfo=UTC), axes=list(range(1, 15)))
    for reading in itertools.islice(fleet, robots * per_robot):
        engine.process(reading)
    return engine


def v2_text(engine: DetectorEngine) -> str:
    """The version-2 file: the same data, the windows as JSON numbers."""
    data = engine_state.snapshot(engine)
    for rid, robot in engine.robots.items():
        axes = data["robots"][rid]["axes"]
        for axis, state in robot.axes.items():
            axes[str(axis)] = {d.name: d.state() for d in state.detectors}
    return json.dumps(data)


def timed(work) -> tuple[float, object]:
    started = time.perf_counter()
    out = work()
    return time.perf_counter() - started, out


def sliced(engine: DetectorEngine) -> tuple[float, float, int, str]:
    """The longest slice, the CPU in all, the slices, and the text, as the service takes it."""
    taking, longest, total, slices, done = Snapshot(engine, engine.robots, []), 0.0, 0.0, 0, False
    while not done:
        seconds, done = timed(taking.advance)
        longest, total, slices = max(longest, seconds), total + seconds, slices + 1
    # The service sends each part as a message of its own; joined here to compare with the whole snapshot.
    parts = ", ".join(f"{json.dumps(rid)}: {part.decode()}" for rid, part in taking.parts.items())
    return longest, total, slices, f'{{"version": {engine_state.SNAPSHOT_VERSION}, "robots": {{{parts}}}}}'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=200)
    parser.add_argument("--readings-per-robot", type=int, default=1500, help="enough to fill the windows")
    parser.add_argument("--runs", type=int, default=3, help="best of this many")
    args = parser.parse_args(argv)
    engine = fed_engine(args.robots, args.readings_per_robot)
    v2 = min(timed(lambda: v2_text(engine)) for _ in range(args.runs))
    v3 = min(timed(lambda: json.dumps(engine_state.snapshot(engine))) for _ in range(args.runs))
    cut = min(sliced(engine) for _ in range(args.runs))
    assert json.loads(cut[3]) == json.loads(v3[1])
    load_s, _ = timed(
        lambda: engine_state.load_snapshot(DetectorEngine(EngineConfig(), AlertModel.load(MODEL)), json.loads(v3[1]))
    )
    rows = [
        {
            "snapshot": "v2, windows as JSON numbers, in one go (before)",
            "loop blocked ms (longest)": v2[0] * 1000,
            "CPU ms": v2[0] * 1000,
            "slices": 1,
            "file MB": len(v2[1]) / 1e6,
        },
        {
            "snapshot": "v3, base64 float64, in one go",
            "loop blocked ms (longest)": v3[0] * 1000,
            "CPU ms": v3[0] * 1000,
            "slices": 1,
            "file MB": len(v3[1]) / 1e6,
        },
        {
            "snapshot": "v3, robot by robot between batches (the service)",
            "loop blocked ms (longest)": cut[0] * 1000,
            "CPU ms": cut[1] * 1000,
            "slices": cut[2],
            "file MB": len(cut[3]) / 1e6,
        },
    ]
    notes = (
        f"Command: `.venv/bin/python -m bench.alerts_snapshot --robots {args.robots} --readings-per-robot "
        f"{args.readings_per_robot} --runs {args.runs}` (best of {args.runs}). {args.robots} robots of the "
        f"synthetic fleet, 14 axes, default detector settings and the shipped model; slice budget "
        f"{SLICE_S * 1000:g} ms (a slice ends after the robot that crosses it). Robot by robot, each "
        f"robot's part is a message of its own on the state topic (since version 4); sending them is not "
        f"counted. Loading the whole state at once: {load_s * 1000:.0f} ms."
    )
    write_results("alerts_snapshot", rows, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
