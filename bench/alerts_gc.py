"""The garbage collector's pauses while consumer_alerts makes its robots (a cold start, or robots handed over).

The engine fed the synthetic fleet from nothing (the default set + ``zscore``, the synthetic fleet's model),
a ``gc.callbacks`` hook timing every collection by generation. Three modes, each in its own process,
interleaved ``--runs`` times (the machine is shared): ``default`` (CPython's thresholds), ``freeze`` (the
service's ``freeze_new_robots`` after each reading) and ``threshold`` (gen 2's threshold 10 -> 1,000).
Then every robot is dropped: the memory still held after (tracemalloc) shows whether frozen robots leak.

    .venv/bin/python -m bench.alerts_gc [--robots 200 1000] [--readings-per-robot 150] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench.results import write_results

MEASURE = """
import gc, itertools, json, sys, time, tracemalloc
from datetime import UTC, datetime
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.model import AlertModel
from consumer_alerts.service import freeze_new_robots
from consumer_alerts.settings import DEFAULT_DETECTORS
from producer.synthetic import synthetic_fleet

mode, robots, per_robot = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pauses, started = [], {}
def timed(phase, info):
    if phase == "start":
        started["t"] = time.perf_counter()
    else:
        pauses.append((info["generation"], time.perf_counter() - started["t"]))
engine = DetectorEngine(EngineConfig(detectors=(*DEFAULT_DETECTORS, "zscore")),
                        AlertModel.load("consumer_alerts/models/synthetic-fleet.json"))
fleet = synthetic_fleet(robots, seed=1, start=datetime(2024, 1, 1, tzinfo=UTC), axes=list(range(1, 15)),
                        faults=True)
readings = iter(itertools.islice(fleet, robots * per_robot))
tracemalloc.start()
gc.callbacks.append(timed)
frozen, wall = 0, time.perf_counter()
if mode == "threshold":
    gc.set_threshold(700, 10, 1000)  # a full collection after 1,000 young ones at most instead of 10
for reading in readings:
    engine.process(reading)
    if mode == "freeze":
        frozen = freeze_new_robots(engine, frozen)  # as the service does after each reading
wall = time.perf_counter() - wall
gc.callbacks.remove(timed)
held, frozen_before = tracemalloc.get_traced_memory()[0], gc.get_freeze_count()
engine.robots.clear()  # robots dropped (a rebalance): freed by their reference counts, frozen or not
after = tracemalloc.get_traced_memory()[0]
full = [s for g, s in pauses if g == 2]
print(json.dumps({
    "mode": mode, "robots": robots, "wall_s": round(wall, 1),
    "full_collections": len(full), "full_longest_ms": round(max(full, default=0) * 1e3, 1),
    "full_total_s": round(sum(full), 2),
    "young_longest_ms": round(max((s for g, s in pauses if g < 2), default=0) * 1e3, 1),
    "frozen_objects": frozen_before, "frozen_after_drop": gc.get_freeze_count(),
    "robots_mb": round(held / 1e6, 1), "mb_after_drop": round(after / 1e6, 1),
    "load": round(__import__("os").getloadavg()[0], 1),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--readings-per-robot", type=int, default=150)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for run in range(args.runs):
        for robots in args.robots:
            modes = ("default", "freeze", "threshold")[:: 1 if run % 2 == 0 else -1]
            for mode in modes:
                out = subprocess.run(
                    [sys.executable, "-c", MEASURE, mode, str(robots), str(args.readings_per_robot)],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                )
                rows.append({"run": run + 1, **json.loads(out.stdout)})
                print(rows[-1], flush=True)
    write_results(
        "alerts_gc",
        rows,
        notes=f"{args.readings_per_robot} readings a robot from cold; pauses timed by "
        "gc.callbacks; frozen_objects: in the permanent generation with every robot made; robots_mb: traced "
        "memory then; *_after_drop: once every robot is dropped.",
    )


if __name__ == "__main__":
    main()
