"""bench.alerts_quality --broad: the detectors on faults from producer.broad_faults, graded by fault size.

For each seed, the seed's catalogue of faults is injected over the evaluated part of the export in a few runs
(a fresh engine per run, so that ``warmup`` faults meet detectors without a baseline), plus one run with a
program change. Per fault: caught (an event on one of its axes opened between its start and its end + grace),
the right severity (the highest of those events is the expected one), the delay to the first event.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta

from bench._alerts_grading import RANK, Event, run_engine
from bench.results import markdown_table
from common.wire.schemas import Reading, Severity
from consumer_alerts.detectors import Finding
from consumer_alerts.detectors.multivariate import MultivariateDetector
from consumer_alerts.engine import MODEL_EVENT, DetectorEngine
from consumer_alerts.lifecycle import Lifecycle
from producer.broad_faults import BroadKind, inject, plan_runs

BUCKETS = ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.5), (0.5, 1.0), (1.0, 3.0), (3.0, float("inf")))
HEADLINE_DEVIATION = 0.3  # the bar: faults of 30 % of an axis's normal level or more
SUSTAINED = ("level", "ramp", "multi", "clamp")


def bucket(deviation: float) -> str:
    for low, high in BUCKETS:
        if low <= deviation < high:
            return f"{low:g}-{high:g}" if high != float("inf") else f">={low:g}"
    return "?"


def evaluate_broad(detect, test, recording, profile, axes, seeds, *, grace_s: float, robot_id: str):
    """Per-fault rows, stray events (matching no fault) and events after program changes, over ``seeds``.
    ``detect(readings)`` runs fresh detectors over a feed and returns its events."""
    faults, stray, program_events, program_hours, relearns = [], 0, 0, 0.0, 0
    hours = (test[-1].ts - test[0].ts).total_seconds() / 3600
    fault_runs = 0
    for seed in seeds:
        for run in plan_runs(seed, recording, axes, robot_id=robot_id):
            faulty = list(inject(test, run, profile))
            events = detect(faulty)
            if run[0].kind is BroadKind.PROGRAM:
                change = run[0].start
                after = [e for e in events if e.alert.opened_at >= change]
                # a re-learn of the robot's model (engine.MODEL_EVENT, INFO) is the expected answer, not an alert
                relearns += sum(1 for e in after if e.alert.detector == MODEL_EVENT)
                program_events += sum(1 for e in after if e.alert.detector != MODEL_EVENT)
                program_hours += (test[-1].ts - change).total_seconds() / 3600
                continue
            fault_runs += 1
            used: set[int] = set()
            for fault in run:
                changed = sum(
                    1
                    for c, f in zip(test, faulty, strict=True)
                    if fault.start <= c.ts < fault.end
                    and any(c.currents.get(a) != f.currents.get(a) for a in fault.axes)
                )
                until = fault.end + timedelta(seconds=grace_s)
                hits = [
                    i
                    for i, e in enumerate(events)
                    if e.alert.axis in fault.axes and fault.start <= e.alert.opened_at <= until
                ]
                used.update(hits)
                got = max((events[i].alert.severity for i in hits), key=RANK.get, default=None)
                expected = Severity(fault.expected_severity) if fault.expected_severity else None
                reached = [events[i].reached[expected] for i in hits if expected in events[i].reached]
                first = min((events[i].alert.opened_at for i in hits), default=None)
                faults.append(
                    {
                        "seed": seed,
                        **fault.label(),
                        "changed_readings": changed,
                        "got": got.value if got else "none",
                        "caught": bool(hits),
                        "ok": got == expected,
                        "delay_s": round((first - fault.start).total_seconds(), 1) if first else None,
                        "severity_delay_s": round((min(reached) - fault.start).total_seconds(), 1) if reached else None,
                        "detectors": ",".join(sorted({events[i].alert.detector for i in hits})),
                    }
                )
            stray += sum(1 for i in range(len(events)) if i not in used)
    return {
        "faults": faults,
        "stray_events_per_h": round(stray / (hours * max(fault_runs, 1)), 2),
        "program_events": program_events,
        "program_events_per_h": round(program_events / program_hours, 2) if program_hours else None,
        "program_relearns": relearns,
    }


def engine_events(config, model, *, multivariate: dict | None = None):
    """A ``detect`` for :func:`evaluate_broad`: the engine, plus the cross-axis detector beside it, started
    from the ``multivariate`` state (learned on the training part, as the model is), its events filed under
    the axis that contributed most (in the engine, where it is opt-in, they are the robot's, on axis 0)."""

    def detect(readings: list[Reading]) -> list[Event]:
        events = run_engine(readings, DetectorEngine(config, model))
        if multivariate is not None:
            events += multivariate_events(readings, multivariate, holdoff_s=config.holdoff_s)
        return events

    return detect


def learned_multivariate(readings: list[Reading]) -> dict:
    """The cross-axis detector's state after learning ``readings`` (the training part, like the model)."""
    detector = MultivariateDetector()
    for reading in readings:
        detector.learn_one(reading.currents)
    return detector.state()


def multivariate_events(readings: list[Reading], state: dict, *, holdoff_s: float) -> list[Event]:
    """One event at a time per robot (the detector judges the robot, not an axis), filed under the axis with
    the largest share of the statistic summed over the event's alarming rows."""
    detector = MultivariateDetector()
    detector.load(state)
    life = Lifecycle(readings[0].robot_id if readings else "", 0, "multivariate", holdoff_s=holdoff_s)
    blame: dict[int, float] = {}
    events: dict[str, Event] = {}
    for reading in readings:
        x = reading.currents
        score = detector.score_one(x)
        shares = detector.contributions
        detector.learn_one(x)
        if life.event is None:
            if score < 0.5:
                continue
            blame = {}
        finding = Finding(Severity.ALERT, 0.0, score, 0.5) if score >= 0.5 else None
        for axis, share in shares.items() if finding else ():
            blame[axis] = blame.get(axis, 0.0) + share
        alert = life.step(reading.ts, finding, bool(shares))
        if alert is not None:
            alert = alert.model_copy(update={"axis": max(blame, key=blame.get)})
            event = events.setdefault(alert.event_id, Event(alert))
            event.alert = alert
            event.reached.setdefault(alert.severity, reading.ts)
    return list(events.values())


def headline(name: str, result: dict, clean_events: int, hours: float) -> dict:
    """The issue's bar: sustained faults (level, ramp, several axes, clamp) of 30 % of the normal level or more,
    caught with the right severity, in both directions. Spikes (seconds long) get their own column: one of 30 %
    for a few seconds is inside the range a work cycle draws anyway."""
    faults = [f for f in result["faults"] if f["changed_readings"] > 0]
    big = [f for f in faults if f["deviation"] >= HEADLINE_DEVIATION and f["kind"] in SUSTAINED]
    row = {"detectors": name, "clean_events_per_h": round(clean_events / hours, 2)}
    for direction in ("up", "down"):
        group = [f for f in big if f["direction"] == direction]
        row[f">=30% {direction} caught"] = _share(group, "caught")
        row[f">=30% {direction} right severity"] = _share(group, "ok")
    row["spikes >=3x caught"] = _share([f for f in faults if f["kind"] == "spike" and f["deviation"] >= 3], "caught")
    row["stuck caught"] = _share([f for f in faults if f["kind"] == "stuck"], "caught")
    row["all caught"] = _share(faults, "caught")
    row["stray_events_per_h"] = result["stray_events_per_h"]
    row["program_change_events_per_h"] = result["program_events_per_h"]
    row["program_change_relearns"] = result["program_relearns"]
    delays = [f["delay_s"] for f in big if f["caught"] and f["delay_s"] is not None]
    row[">=30% delay_s_median"] = round(statistics.median(delays)) if delays else None
    return row


def by_size(faults: list[dict]) -> list[dict]:
    """Caught / right severity / median delay per kind, direction and size bucket."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for f in faults:
        if f["changed_readings"] > 0:
            size = "flat" if f["kind"] == "stuck" else bucket(f["deviation"])
            groups[(f["kind"], f["direction"], size)].append(f)
    order = {b: i for i, b in enumerate([bucket(low) for low, _ in BUCKETS] + ["flat"])}
    rows = []
    for (kind, direction, size), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]])):
        delays = [f["delay_s"] for f in group if f["caught"] and f["delay_s"] is not None]
        rows.append(
            {
                "kind": kind,
                "direction": direction,
                "size": size,
                "faults": len(group),
                "caught": _share(group, "caught"),
                "right_severity": _share(group, "ok"),
                "delay_s_median": round(statistics.median(delays)) if delays else None,
            }
        )
    return rows


def smallest_caught(faults: list[dict]) -> list[dict]:
    """Per axis, kind and direction: the smallest fault caught, and the size from which every one was."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for f in faults:
        if f["changed_readings"] > 0 and f["kind"] not in ("stuck", "multi"):
            groups[(int(f["axes"]), f["kind"], f["direction"])].append(f)
    rows = []
    for (axis, kind, direction), group in sorted(groups.items()):
        caught = [f["deviation"] for f in group if f["caught"]]
        missed = [f["deviation"] for f in group if not f["caught"]]
        above_misses = [d for d in caught if d > max(missed, default=-1)]
        rows.append(
            {
                "axis": axis,
                "kind": kind,
                "direction": direction,
                "faults": len(group),
                "smallest_caught": round(min(caught), 3) if caught else None,
                "all_caught_from": round(min(above_misses), 3) if above_misses else None,
                "largest_missed": round(max(missed), 3) if missed else None,
            }
        )
    return rows


def by_placement(faults: list[dict]) -> list[dict]:
    rows = []
    for placement in ("warmup", "after_stoppage", "working"):
        for idle in (False, True):
            group = [f for f in faults if f["placement"] == placement and f["changed_readings"] > 0]
            if idle:
                group = [f for f in group if f["through_idle"]]
                if not group:
                    continue
            rows.append(
                {
                    "placement": placement + (" (clamp/stuck through idle)" if idle else ""),
                    "faults": len(group),
                    "caught": _share(group, "caught"),
                    "right_severity": _share(group, "ok"),
                }
            )
    return rows


def report_markdown(per_config: dict[str, dict]) -> str:
    parts = []
    for name, result in per_config.items():
        faults = result["faults"]
        parts += [
            f"### {name}: by kind, direction and size (deviation from the axis's normal level)\n",
            markdown_table(by_size(faults)),
            f"### {name}: by placement\n",
            markdown_table(by_placement(faults)),
            f"### {name}: smallest fault caught per axis, kind and direction\n",
            markdown_table(smallest_caught(faults)),
        ]
    return "\n".join(parts)


def _share(group: list[dict], key: str) -> str:
    return f"{sum(bool(f[key]) for f in group)}/{len(group)}" if group else ""
