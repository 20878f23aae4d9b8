"""consumer_alerts' CPU per reading on a cold fleet, against a reference tree (a benchmark, not a timed test).

``bench.alerts_cpu`` times one robot whose model was trained beforehand: every detector warm. A service that
starts, or takes robots over from a rebalance without their state, judges a fleet whose every robot is new:
its axes are made at its first reading, its detectors warm up, and with no model file it learns its own model
(``MODEL_LEARN_READINGS``). This is what a fleet's first minutes cost (issue 23: 1,000 robots in one burst).

The engine fed ``--robots`` fresh robots of the synthetic fleet (faults every ``--fault-period`` s, as
``bench.pipeline_latency`` sends them), ``--readings-per-robot`` readings each, tick by tick as the burst comes
(every robot's reading of a tick, then the next tick); no model file, the default detectors and ``zscore``
(``--detectors`` for another set), and the robots frozen for the collector as the service does. The readings are
made before the clock starts; ``time.process_time`` (CPU, so other work on the machine counts less) over the
whole feed and per minute of the robots' life (30 ticks of 2 s). Each run in its own process, the two trees in
turn (the reference first in odd rounds, this tree first in even ones), ``--rounds`` times. The reference tree
is a commit unpacked apart with ``git archive`` (as ``bench.alerts_cpu`` does).

    .venv/bin/python -m bench.alerts_cold_cpu [--reference-commit main] [--robots 1000]
        [--readings-per-robot 90] [--rounds 3] [--detectors level,load,...] [--profile FILE]

``--profile FILE``: one run of this tree under cProfile (no reference, no timing), its stats to FILE.
Results: ``bench/results/alerts_cold_cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bench._trees import run_in, unpacked
from bench.results import write_results

HERE = Path(__file__).resolve().parents[1]
TICKS_PER_MINUTE = 30  # the synthetic fleet's tick is 2 s

# Run inside the tree under test (its own modules first on the path).
MEASURE = """
import cProfile, itertools, json, os, sys, time
from datetime import UTC, datetime
sys.path.insert(0, sys.argv[1])
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.service import freeze_new_robots
from producer.synthetic import synthetic_fleet

robots, per_robot, fault_period, detectors, profile = sys.argv[2:7]
robots, per_robot, per_minute = int(robots), int(per_robot), int(sys.argv[7])
fleet = synthetic_fleet(robots, seed=1, start=datetime(2024, 1, 1, tzinfo=UTC), axes=list(range(1, 15)),
                        faults=True, fault_period_s=float(fault_period))
readings = list(itertools.islice(fleet, robots * per_robot))  # tick by tick: every robot's reading of a tick
engine = DetectorEngine(EngineConfig(detectors=tuple(detectors.split(","))))  # no model: every robot learns
events, minutes, frozen = 0, [], 0
profiler = cProfile.Profile() if profile else None
if profiler:
    profiler.enable()
started = time.process_time()
for tick in range(0, len(readings), robots):
    for reading in readings[tick:tick + robots]:
        events += len(engine.process(reading))
        frozen = freeze_new_robots(engine, frozen)  # as the service does after each reading
    if (tick // robots + 1) % per_minute == 0 or tick + robots >= len(readings):
        minutes.append((time.process_time(), tick + robots))  # the CPU so far, and the readings judged so far
total = time.process_time() - started
if profiler:
    profiler.disable()
    profiler.dump_stats(profile)
bounds = [(started, 0), *minutes]  # a last minute may be partial: per reading of its own
per_minute_us = [round((b - a) / (m - n) * 1e6, 1) for (a, n), (b, m) in zip(bounds, bounds[1:])]
print(json.dumps({"us/reading": round(total / len(readings) * 1e6, 1), "per minute": per_minute_us,
                  "events": events, "load": round(os.getloadavg()[0], 1)}))
"""


def measure(tree: Path, args, profile: str = "") -> dict:
    out = run_in(
        tree,
        MEASURE,
        str(args.robots),
        str(args.readings_per_robot),
        str(args.fault_period),
        args.detectors,
        profile,
        str(TICKS_PER_MINUTE),
    )
    return json.loads([line for line in out.split("\n") if line.startswith("{")][-1])


def main(argv: list[str] | None = None) -> int:
    from consumer_alerts.settings import DEFAULT_DETECTORS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-commit", default="main", help="the commit to compare with (default main)")
    parser.add_argument("--robots", type=int, default=1000)
    parser.add_argument("--readings-per-robot", type=int, default=90, help="default 90: a robot's first 3 minutes")
    parser.add_argument("--fault-period", type=float, default=60.0)
    parser.add_argument("--detectors", default=",".join((*DEFAULT_DETECTORS, "zscore")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="profile one run of this tree (cProfile) into this file instead")
    args = parser.parse_args(argv)
    if args.profile:
        print(measure(HERE, args, os.path.abspath(args.profile)))
        return 0
    rows = []
    with unpacked(args.reference_commit) as reference:
        for n in range(args.rounds):
            trees = [("reference", reference), ("this tree", HERE)][:: 1 if n % 2 == 0 else -1]
            for name, tree in trees:
                result = measure(tree, args)
                rows.append({"round": n + 1, "tree": name, **result})
                print(rows[-1], flush=True)
    write_results(
        "alerts_cold_cpu",
        rows,
        notes=f"- Reference: {args.reference_commit}; {args.robots} fresh robots x {args.readings_per_robot} "
        f"readings, faults every {args.fault_period:g} s, detectors {args.detectors}, no model file; "
        "per minute: us/reading over each minute of the robots' life; load: 1-min load average at the end.",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
