"""consumer_alerts' CPU per tick of a paced fleet, in process: which ticks are slow, and what they did.

The service's own pieces (``Intake`` with the health pipeline, ``process_and_send``, the health state's
``StateSaver``, ``Checkpoints``) on an in-process bus, in the loop of ``consumer_alerts.service.run`` on a
simulated clock: the synthetic fleet (faults every --fault-period s) comes in one burst every 2 s, as
``bench.load_curve`` feeds it; each piece of work moves the clock by its process CPU (``time.process_time``)
times --slowdown (wall seconds per CPU second: 1 on an idle machine), an empty poll by its timeout; the
service's interval clocks (checkpoints, the health state) read that clock, so an hour of feed takes minutes.

Per tick: the CPU of judging its burst (a checkpoint's copy-on-write included), how long it waited for the loop,
when its last reading was judged (wait + CPU x slowdown), when each of its alert events was found and when it could
go on the wire (the service's next turn of the loop after it, or the batch's end: an event waits for company up to
SHIP_EVERY_S) on the same clock: the in-process side of reading -> alert event; the health state's save and the
checkpoint's start after it, the garbage collector's time by generation, and the CPU and calls of the functions in
--time (the work that lands on some ticks only: a model fitted, the cross-axis basis, health cycles closing, a robot
serialised). The ticks over --slow-ms are listed; --profile adds a cProfile of each (it inflates the times). Also
listed: when a checkpoint started on an empty poll (seconds after the tick before it).

    .venv/bin/python -m bench.alerts_ticks [--robots 200] [--minutes 20] [--fault-period 60] [--slowdown 2]
        [--tree PATH ...] [--rounds 1] [--slow-ms 50] [--learn-readings N] [--profile] [--name alerts_ticks]

The fleet's models are fitted 2.4-2.7 h into the feed (MODEL_LEARN_READINGS 4000 active readings): --minutes 165
includes them (with fewer --robots to keep the run short; a fit's cost does not depend on the fleet's size).

--tree measures another tree (e.g. main's, unpacked with ``git archive``) with this interpreter; several trees
are measured in turn, --rounds times, the order reversed every other round. The service's settings are
pipeline_latency's: DETECTORS=level,load,residual,stuck,multivariate,zscore, Z_MIN_SAMPLES=30, the health
pipeline on with its state file, SNAPSHOT_INTERVAL_S 30.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.results import write_results

MEASURE = r"""
import asyncio, cProfile, gc, io, json, pstats, sys, time
sys.path.insert(0, sys.argv[1])
from datetime import UTC, datetime, timedelta
from pathlib import Path
import consumer_alerts.checkpoint as checkpoint_module
import consumer_alerts.health.state as health_state_module
import consumer_alerts.service as service_module
from common.wire.bus import InProcessBus, Message
from common.wire.schemas import RobotRoster
from consumer_alerts.checkpoint import Checkpoints
from consumer_alerts.health.monitor import HealthConfig, HealthMonitor
from consumer_alerts.health.state import StateSaver, health_state_path
from consumer_alerts.recovery import remember
from consumer_alerts.service import Intake, build_engine, process_and_send
from consumer_alerts.settings import AlertsSettings
from producer.synthetic import synthetic_fleet

robots, minutes, fault_period, profile, slow_ms, state_dir, slowdown = (
    int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1", float(sys.argv[6]), sys.argv[7],
    float(sys.argv[9]))
settings = AlertsSettings(
    detectors=["level", "load", "residual", "stuck", "multivariate", "zscore"], z_min_samples=30,
    state_path=Path(state_dir) / "consumer_alerts-state.json", model_path=None,
    **({"model_learn_readings": int(sys.argv[10])} if int(sys.argv[10]) > 0 else {}),
)
clock = {"now": 0.0}  # the service's interval clocks, on feed time
checkpoint_module.time = type("T", (), {"monotonic": staticmethod(lambda: clock["now"]),
                                          "perf_counter": staticmethod(time.perf_counter)})
health_state_module.time = type("T", (), {"monotonic": staticmethod(lambda: clock["now"]),
                                            "perf_counter": staticmethod(time.perf_counter)})

gc_time = [0.0, 0.0, 0.0]
gc_started = {}
def on_gc(phase, info):
    if phase == "start":
        gc_started["t"] = time.process_time()
    else:
        gc_time[info["generation"]] += time.process_time() - gc_started["t"]
gc.callbacks.append(on_gc)

# When each alert event of a tick was judged: CPU since the tick's start (its readings' wait added later).
event_cpu, tick_cpu = [], {"start": 0.0}
judge_in_turn = service_module.events_per_reading
def events_timed(*a, **k):
    for events in judge_in_turn(*a, **k):
        if isinstance(events, list) and events:
            event_cpu.extend([time.process_time() - tick_cpu["start"]] * len(events))
        yield events
service_module.events_per_reading = events_timed
# When each event could go on the wire: the service's let_out after it (a turn of the loop for the Kafka client),
# or the batch's end (its sends are then awaited). Events wait there for company (SHIP_EVERY_S).
ship_cpu = []
let_out = service_module.let_out
async def let_out_timed():
    ship_cpu.append(time.process_time() - tick_cpu["start"])
    await let_out()
service_module.let_out = let_out_timed

# The work that may land on some ticks and not others, timed where it is done (CPU per tick, calls per tick).
import importlib
spent: dict = {}
def timed(module, owner, name, label):
    target = getattr(importlib.import_module(module), owner) if owner else importlib.import_module(module)
    inner = getattr(target, name)
    def wrapper(*a, **k):
        t = time.process_time()
        try:
            return inner(*a, **k)
        finally:
            got = spent.setdefault(label, [0.0, 0])
            got[0] += time.process_time() - t
            got[1] += 1
    setattr(target, name, wrapper)
for spec in sys.argv[8].split(",") if len(sys.argv) > 8 and sys.argv[8] else []:
    module, owner, name = spec.split(":")
    timed(module, owner or None, name, f"{owner}.{name}" if owner else name)

async def main():
    bus = InProcessBus(partitions=4)
    engine = build_engine(settings)
    policy = settings.reading_policy()
    intake = Intake(policy, RobotRoster(policy, engine.robots, service="consumer_alerts"), "dead")
    intake.health, intake.health_topic = HealthMonitor(HealthConfig.from_settings(settings)), "health"
    saver = StateSaver(intake.health, health_state_path(settings), settings.snapshot_interval_s)
    checkpoints = Checkpoints(engine, bus, "state", "readings", settings.snapshot_interval_s)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    fleet = iter(synthetic_fleet(robots, seed=1, start=start, faults=True, fault_period_s=fault_period))
    sent, ticks, offsets, starts = {}, [], [0] * 4, []
    # Main's saver pickles in one go after a batch (no slices, nothing to do on an empty poll).
    sliced_saver = hasattr(saver, "busy")
    # The service's loop (consumer_alerts.service.run) on a simulated clock: each piece of work moves it by its
    # CPU times --slowdown, an empty poll by its timeout; a tick's readings come in one burst every 2 s.
    n_ticks, now, tick, arrives = int(minutes * 60 / 2), 0.0, 0, 0.0
    while tick < n_ticks:
        busy = checkpoints.busy or (sliced_saver and saver.busy)
        timeout = 0.001 if busy else settings.poll_timeout_ms / 1000
        messages, waited = [], 0.0
        if now + timeout >= arrives:
            now, waited = max(now, arrives), max(0.0, now - arrives)
            for i in range(robots):
                reading = next(fleet)
                p = hash(reading.robot_id) % 4
                messages.append(Message("readings", p, offsets[p], reading.robot_id.encode(), reading.to_bytes()))
                offsets[p] += 1
        else:
            now += timeout
        clock["now"] = now
        if not messages:
            cpu = time.process_time()
            idle = not checkpoints.busy
            if sliced_saver:
                await saver.after_batch(after_readings=False)
            await checkpoints.after_batch([])
            if idle and checkpoints.busy:
                starts.append(round(now - arrives + 2.0, 3))  # a checkpoint started on an empty poll
            await asyncio.sleep(0)
            now += (time.process_time() - cpu) * slowdown
            continue
        prof = cProfile.Profile() if profile else None
        gc_time[:] = [0.0, 0.0, 0.0]
        spent.clear()
        if prof: prof.enable()
        cpu = tick_cpu["start"] = time.process_time()
        event_cpu.clear()
        ship_cpu.clear()
        alerts = await process_and_send(engine, messages, bus, "alerts", sent,
                                        before=checkpoints.before_reading, intake=intake)
        remember(sent, alerts)
        judged = time.process_time()
        shipped = [min([s for s in ship_cpu if s >= e] + [judged - cpu]) for e in event_cpu]
        await saver.after_batch()
        saved = time.process_time()
        clock["now"] = now + (saved - cpu) * slowdown  # the service's clocks read after the batch's work
        await checkpoints.after_batch(messages)
        await asyncio.sleep(0)
        done = time.process_time()
        if prof: prof.disable()
        now += (done - cpu) * slowdown
        row = {"tick": tick, "cpu_ms": (judged - cpu) * 1e3, "waited_ms": waited * 1e3,
               "health_save_ms": (saved - judged) * 1e3, "checkpoint_ms": (done - saved) * 1e3,
               "snapshot_pending": len(checkpoints.taking.pending) if checkpoints.taking else 0,
               "events": len(alerts), "gc_ms": [round(g * 1e3, 1) for g in gc_time],
               "parts": {k: [round(v * 1e3, 1), n] for k, (v, n) in spent.items()},
               "event_cpu_ms": [round(e * 1e3, 1) for e in event_cpu],
               "shipped_cpu_ms": [round(e * 1e3, 1) for e in shipped]}
        ticks.append(row)
        if prof and row["cpu_ms"] >= slow_ms:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
            row["profile"] = out.getvalue()
        tick, arrives = tick + 1, arrives + 2.0
    print(json.dumps({"ticks": ticks, "empty_poll_starts": starts}))

asyncio.run(main())
"""


TIMED = [
    "consumer_alerts.engine:DetectorEngine:process",
    "consumer_alerts.detectors.multivariate:MultivariateDetector:update",
    "consumer_alerts.detectors.multivariate:MultivariateDetector:_decompose",
    "consumer_alerts.learning:ModelLearner:observe",
    "consumer_alerts.learning::fit",
    "consumer_alerts.health.monitor:HealthMonitor:process",
    "consumer_alerts.health.monitor:HealthMonitor:_cycle",
    "consumer_alerts.health.monitor:HealthMonitor:_hours",
    "consumer_alerts.checkpoint:Snapshot:_serialise",
    "common.wire.schemas:ReadingPolicy:read",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(tree: Path, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as state_dir:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                MEASURE,
                str(tree),
                str(args.robots),
                str(args.minutes),
                str(args.fault_period),
                "1" if args.profile else "0",
                str(args.slow_ms),
                state_dir,
                ",".join(args.time),
                str(args.slowdown),
                str(args.learn_readings),
            ],
            capture_output=True,
            text=True,
            cwd=tree,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
        )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(ticks: list[dict], slow_ms: float, slowdown: float) -> dict:
    """A tick's judging CPU (copy-on-write of a checkpoint under way included), and when its last reading was
    judged on the simulated clock: the wait for the loop plus its judging."""
    for t in ticks:
        t["judged_ms"] = t["waited_ms"] + t["cpu_ms"] * slowdown
    cpu = [t["cpu_ms"] for t in ticks]
    judged = [t["judged_ms"] for t in ticks]
    slow = [t for t in ticks if t["cpu_ms"] >= slow_ms or t["judged_ms"] >= slow_ms * slowdown]
    events = [t["waited_ms"] + e * slowdown for t in ticks for e in t.pop("event_cpu_ms")] or [0.0]
    shipped = [t["waited_ms"] + e * slowdown for t in ticks for e in t.pop("shipped_cpu_ms", [])] or [0.0]
    return {
        "ticks": len(ticks),
        "cpu_ms": {"p50": pct(cpu, 0.5), "p99": pct(cpu, 0.99), "max": max(cpu)},
        "judged_ms": {"p50": pct(judged, 0.5), "p99": pct(judged, 0.99), "max": max(judged)},
        "event_ms": {"p50": pct(events, 0.5), "p99": pct(events, 0.99), "max": max(events), "count": len(events)},
        "shipped_ms": {"p50": pct(shipped, 0.5), "p99": pct(shipped, 0.99), "max": max(shipped)},
        "late_ticks": sum(1 for t in ticks if t["waited_ms"] > 0),
        "health_save_max_ms": max(t["health_save_ms"] for t in ticks),
        "slow": [
            {k: (round(v, 1) if isinstance(v, float) else v) for k, v in t.items() if k != "profile"} for t in slow
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=20.0, help="feed time")
    parser.add_argument("--fault-period", type=float, default=60.0)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="tree(s) to measure (default: this)")
    parser.add_argument("--rounds", type=int, default=1, help="the trees in turn, this many times")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--slow-ms", type=float, default=50.0)
    parser.add_argument(
        "--slowdown", type=float, default=2.0, help="wall seconds per CPU second on the simulated clock (1: idle)"
    )
    parser.add_argument(
        "--time",
        nargs="*",
        default=TIMED,
        help="functions whose CPU per tick is reported, as module:Class:function (module::function)",
    )
    parser.add_argument(
        "--learn-readings",
        type=int,
        default=0,
        help="MODEL_LEARN_READINGS (0: the default, 4000 active readings: the fleet's models are fitted ~2.4-2.7 h "
        "into the feed)",
    )
    parser.add_argument("--name", default="alerts_ticks")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree] or [Path(__file__).resolve().parents[1]]
    rows, slow = [], []
    for round_ in range(args.rounds):
        for tree in trees if round_ % 2 == 0 else trees[::-1]:
            load = os.getloadavg()[0]
            measured = measure(tree, args)
            ticks = measured["ticks"]
            print("checkpoints started on an empty poll, s after the tick before:", measured["empty_poll_starts"])
            found = summary(ticks, args.slow_ms, args.slowdown)
            c, j = found["cpu_ms"], found["judged_ms"]
            rows.append(
                {
                    "tree": tree.name,
                    "round": round_,
                    "load": round(load, 1),
                    "ticks": found["ticks"],
                    **{f"tick CPU {k} ms": round(v, 1) for k, v in c.items()},
                    **{f"judged {k} ms": round(v, 1) for k, v in j.items()},
                    **{f"event {k} ms": round(v, 1) for k, v in found["event_ms"].items() if k != "count"},
                    **{f"shipped {k} ms": round(v, 1) for k, v in found["shipped_ms"].items()},
                    "events": found["event_ms"]["count"],
                    "ticks late": found["late_ticks"],
                    "health save max ms": round(found["health_save_max_ms"], 1),
                }
            )
            slow.append({"tree": str(tree), "round": round_, "slow": found["slow"]})
            print(
                f"{tree} round {round_} load {load:.1f}: tick CPU p50 {c['p50']:.1f} p99 {c['p99']:.1f} "
                f"max {c['max']:.1f} ms; judged p50 {j['p50']:.1f} p99 {j['p99']:.1f} max {j['max']:.1f} ms; "
                f"events ({found['event_ms']['count']}) judged p50 {found['event_ms']['p50']:.1f} p99 "
                f"{found['event_ms']['p99']:.1f} max {found['event_ms']['max']:.1f} ms, shipped p50 "
                f"{found['shipped_ms']['p50']:.1f} p99 {found['shipped_ms']['p99']:.1f} max "
                f"{found['shipped_ms']['max']:.1f} ms; "
                f"{found['late_ticks']} ticks late; health save max {found['health_save_max_ms']:.1f} ms",
                flush=True,
            )
            for t in found["slow"][:40]:
                print("   ", json.dumps(t))
            if args.profile:
                for t in [t for t in ticks if "profile" in t][:6]:
                    print(f"--- tick {t['tick']} {t['cpu_ms']:.1f} ms\n{t['profile']}")
    write_results(
        args.name,
        rows,
        notes=f"{args.robots} robots, {args.minutes:g} min of feed, a fault every {args.fault_period:g} s",
        extra={"slow_ticks": slow},
    )


if __name__ == "__main__":
    main()
