"""What consumer_alerts' checkpoint costs: the robots of the synthetic fleet fed until their windows hold
what a running service's do, then their state serialised side by side in one run, each form robot by robot
as the service takes it (slices of SLICE_S between batches):

- v4 (before): JSON, each window as base64 float64 (reproduced here from the same detector states);
- v5 (the service): MessagePack, the windows as plain lists of floats.

Per form: the CPU of one checkpoint of every robot, the longest slice (how long the loop is held at most),
the bytes written to the state topic, and the CPU per reading at the real rate (one reading per robot every
2 s, a checkpoint every SNAPSHOT_INTERVAL_S). The forms' order alternates from run to run (the machine is
shared: the best of --runs each). Restoring every robot from the v5 bytes is timed too.

    .venv/bin/python -m bench.alerts_snapshot [--robots 1000] [--readings-per-robot 150] [--runs 3]
        [--detectors level,load,residual,stuck,multivariate,zscore]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import sys
import time
from array import array
from collections.abc import Callable
from datetime import UTC, datetime

from bench.results import write_results
from consumer_alerts import engine_state
from consumer_alerts.checkpoint import SLICE_S, Snapshot
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.model import AlertModel
from consumer_alerts.settings import DEFAULT_DETECTORS, AlertsSettings
from producer.synthetic import synthetic_fleet

MODEL = "consumer_alerts/models/synthetic-fleet.json"
READING_INTERVAL_S = 2.0  # the synthetic fleet's real rate


def fed_engine(robots: int, per_robot: int, detectors: tuple[str, ...]) -> DetectorEngine:
    engine = DetectorEngine(EngineConfig(detectors=detectors), AlertModel.load(MODEL))
    fleet = synthetic_fleet(robots, seed=1, start=datetime(2024, 1, 1, tzinfo=UTC), axes=list(range(1, 15)))
    for reading in itertools.islice(fleet, robots * per_robot):
        engine.process(reading)
    return engine


def v4_bytes(state: dict) -> bytes:
    """The version-4 form of the same state: JSON, every window (a list) base64 float64."""
    packed = {
        axis: {
            name: {
                k: {"f64": base64.b64encode(array("d", v)).decode("ascii")} if isinstance(v, list) else v
                for k, v in detector.items()
            }
            for name, detector in detectors.items()
        }
        for axis, detectors in state["axes"].items()
    }
    return json.dumps({**state, "version": 4, "axes": packed}).encode()


def sliced(engine: DetectorEngine, encode: Callable[[dict], bytes]) -> dict:
    """One checkpoint of every robot as the service takes it, with ``encode`` as the state's form."""
    real, engine_state.encode = engine_state.encode, encode
    try:
        taking, longest, slices, done = Snapshot(engine, engine.robots, []), 0.0, 0, False
        cpu = time.process_time()
        while not done:
            started = time.perf_counter()
            done = taking.advance()
            longest, slices = max(longest, time.perf_counter() - started), slices + 1
        cpu = time.process_time() - cpu
    finally:
        engine_state.encode = real
    return {"cpu_s": cpu, "longest_s": longest, "slices": slices, "bytes": sum(map(len, taking.parts.values()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=1000)
    parser.add_argument(
        "--readings-per-robot", type=int, default=150, help="150: 5 minutes of a robot at one reading every 2 s"
    )
    parser.add_argument("--runs", type=int, default=3, help="best of this many")
    parser.add_argument("--detectors", default=",".join(DEFAULT_DETECTORS))
    args = parser.parse_args(argv)
    detectors = tuple(args.detectors.split(","))
    interval_s = AlertsSettings.model_fields["snapshot_interval_s"].default
    engine = fed_engine(args.robots, args.readings_per_robot, detectors)
    forms = {
        "v4: JSON, windows as base64 float64 (before)": v4_bytes,
        "v5: MessagePack, windows as lists of floats (the service)": engine_state.encode,
    }
    best: dict[str, dict] = {}
    for run in range(args.runs):
        for name in list(forms)[:: 1 if run % 2 == 0 else -1]:
            found = sliced(engine, forms[name])
            if name not in best or found["cpu_s"] < best[name]["cpu_s"]:
                best[name] = found
    parts = {rid: engine_state.encode(engine_state.robot_snapshot(r)) for rid, r in engine.robots.items()}
    restored = DetectorEngine(EngineConfig(detectors=detectors), AlertModel.load(MODEL))
    started = time.process_time()
    for rid, part in parts.items():
        engine_state.load_robot(restored, rid, engine_state.decode(part))
    restore_s = time.process_time() - started
    readings_per_checkpoint = args.robots * interval_s / READING_INTERVAL_S
    rows = [
        {
            "form": name,
            "CPU s per checkpoint": round(found["cpu_s"], 3),
            "CPU µs per reading": round(found["cpu_s"] / readings_per_checkpoint * 1e6),
            "ms per robot": round(found["cpu_s"] / args.robots * 1000, 2),
            "loop held ms (longest slice)": round(found["longest_s"] * 1000, 1),
            "slices": found["slices"],
            "MB written": round(found["bytes"] / 1e6, 1),
            "KB per robot": round(found["bytes"] / args.robots / 1e3, 1),
        }
        for name, found in best.items()
    ]
    notes = (
        f"Command: `.venv/bin/python -m bench.alerts_snapshot --robots {args.robots} --readings-per-robot "
        f"{args.readings_per_robot} --runs {args.runs} --detectors {args.detectors}` (best of {args.runs} each, "
        f"the forms in turn). {args.robots} robots of the synthetic fleet, 14 axes, the shipped model; slice "
        f"budget {SLICE_S * 1000:g} ms (a slice ends after the robot that crosses it). CPU per reading: one "
        f"checkpoint every {interval_s:g} s at one reading per robot every {READING_INTERVAL_S:g} s "
        f"({readings_per_checkpoint:,.0f} readings). Sending the parts to Kafka is not counted. Restoring every "
        f"robot from the v5 bytes: {restore_s:.2f} s of CPU. Load average at the end: "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (a shared machine)."
    )
    write_results("alerts_snapshot", rows, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
