"""What the health pipeline adds to consumer_alerts' CPU per reading (issue 22; a benchmark, not a timed test).

The service's per-reading path (``consumer_alerts.service.events_per_reading``: decode with the policy, roster,
the detector engine with the shipped synthetic-fleet model and the default detectors, then the health
pipeline when on) over the same messages of a synthetic fleet (live feed, 2 s ticks, 14 axes), with the
health pipeline off and on, interleaved (off, on, off, on, ...) so that the machine's other work hits both
alike; CPU time (``time.process_time``), best of ``--rounds`` each.

    .venv/bin/python -m bench.health_cost [--robots 5] [--hours 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.results import write_results
from common.wire.bus import Message
from common.wire.schemas import DEFAULT_POLICY, RobotRoster
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.health.monitor import HealthMonitor
from consumer_alerts.model import AlertModel
from consumer_alerts.service import Intake, events_per_reading
from producer.synthetic import SyntheticRobot, robot_ids

MODEL = Path(__file__).resolve().parents[1] / "consumer_alerts" / "models" / "synthetic-fleet.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robots", type=int, default=5)
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ticks = int(args.hours * 3600 / 2)
    robots = [
        SyntheticRobot(rid, seed=1, tick_seconds=2.0, start=start, axes=range(1, 15)) for rid in robot_ids(args.robots)
    ]
    readings = [r for tick in zip(*(itertools.islice(robot, ticks) for robot in robots), strict=True) for r in tick]
    messages = [Message("readings", 0, i, r.robot_id.encode(), r.to_bytes()) for i, r in enumerate(readings)]
    model = AlertModel.load(MODEL)
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    events: dict[str, int] = {}
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            health = HealthMonitor() if mode == "on" else None
            intake = Intake(DEFAULT_POLICY, RobotRoster(DEFAULT_POLICY), health=health)
            engine = DetectorEngine(EngineConfig(), model)
            started = time.process_time()
            for _found in events_per_reading(engine, messages, intake=intake):
                if health is not None:
                    events[mode] = events.get(mode, 0) + len(health.take_events())
            cpu[mode].append((time.process_time() - started) / len(messages) * 1e6)
    off, on = min(cpu["off"]), min(cpu["on"])
    rows = [
        {"health": mode, "us_per_reading_best": round(min(v), 1), "runs": ", ".join(f"{x:.1f}" for x in v)}
        for mode, v in cpu.items()
    ]
    rows.append({"health": "added", "us_per_reading_best": round(on - off, 1), "runs": f"×{on / off:.2f}"})
    notes = (
        f"{args.robots} synthetic robots × {args.hours:g} h ({len(messages):,} readings, 14 axes), model "
        f"{MODEL.name}, default detectors; {events.get('on', 0):,} health events made per 'on' round"
    )
    write_results("health_cost", rows, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
