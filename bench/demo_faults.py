"""The demo's own faults, offline: does every injected fault raise its event in its window, and does the event
close soon after the fault ends? (a benchmark, no services needed)

The demo's settings (`demo.embedded`: its options' defaults, the producer's and the alert service's settings
as the demo builds them), its detectors prepared the way the demo prepares them (hours of fault-free feed of the
same robots before the start, each robot's model learned from its own), then the synthetic fleet with faults
through the engine in process, faster than any clock. Per fault: caught (an event of its robot and axis opens
between its start and its end + ``--grace-s``), severity, delay, and how long after the fault's end that event
closed (open at the end of the run: not closed; an event still open when the next fault of its axis starts is
judged at that fault's end).

    .venv/bin/python -m bench.demo_faults [--hours 3] [--grace-s 600] [--close-within-s 600] [--fault-period S]
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

from bench._alerts_grading import RANK, run_engine
from bench.results import write_results
from common.wire.schemas import Severity
from consumer_alerts.engine import DetectorEngine
from demo.embedded import add_demo_options, demo_options, prepared_engine, service_settings
from producer.synthetic import synthetic_fleet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=3.0, help="hours of the demo's feed (default 3)")
    parser.add_argument("--grace-s", type=float, default=600.0, help="an event opened this long after a fault counts")
    parser.add_argument(
        "--close-within-s", type=float, default=600.0, help="an event should close within this long of the fault's end"
    )
    parser.add_argument(
        "--fault-period",
        type=float,
        default=None,
        help="seconds of feed per round of one fault of each kind (default: the demo's own)",
    )
    args = parser.parse_args(argv)
    demo = argparse.ArgumentParser()
    add_demo_options(demo)
    period = [] if args.fault_period is None else ["--fault-period", str(args.fault_period)]
    options = demo_options(demo.parse_args(period))  # the demo's defaults, but for the fault period if given
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    producer, _, alerts, _ = service_settings(options)
    engine = prepared_engine(producer, alerts, start)
    fleet = synthetic_fleet(
        producer.robots,
        seed=producer.seed,
        tick_seconds=producer.tick_seconds,
        start=start,
        axes=producer.axes,
        faults=True,
        fault_period_s=producer.fault_period_s,
    )
    end = start + timedelta(hours=args.hours)
    readings = []
    for reading in fleet:
        if reading.ts >= end:
            break
        readings.append(reading)
    labels = [lab for lab in fleet.labels(end) if lab.end <= end - timedelta(seconds=args.grace_s)]
    events = run_engine(_watching_load(readings, engine, labels, args.grace_s), engine)
    faults, used = [], set()
    for lab in labels:
        until = lab.end + timedelta(seconds=args.grace_s)
        # An event that opens once the next fault of the same robot and axis has started is that fault's: the
        # demo's faults come back to back, and an overload's cycle event opened 97 s into it was counted as the
        # spike's before it (ended 139 s earlier), "closed 1,150 s after" that spike.
        following = min((o.start for o in labels if _same_axis(o, lab) and o.start > lab.start), default=None)
        hits = [
            i
            for i, e in enumerate(events)
            if (e.alert.robot_id, e.alert.axis) == (lab.robot_id, lab.axis)
            and lab.start <= e.alert.opened_at <= until
            and (following is None or e.alert.opened_at < following)
        ]
        used.update(hits)
        got = max((events[i].alert.severity for i in hits), key=RANK.get, default=None)
        expected = Severity(lab.expected_severity) if lab.expected_severity else None
        closed = [events[i].alert.closed_at for i in hits]
        last_close = max(closed) if hits and all(c is not None for c in closed) else None
        # An event still open when the next fault of the same axis starts goes on into it (one event per key):
        # its close is that fault's. A spike's residual ERROR, 140 s before an overload of its axis, could not
        # close before it (HOLDOFF_S is 300 s) and closed 31 s after the overload's end.
        carried_into = [o for o in labels if _same_axis(o, lab) and last_close and lab.start < o.start <= last_close]
        close_end = max([lab.end] + [o.end for o in carried_into])
        close_after = round((last_close - close_end).total_seconds()) if last_close is not None else None
        reach = _LOAD_PEAKS.get(id(lab))
        faults.append(
            {
                "robot": lab.robot_id,
                "axis": lab.axis,
                "kind": lab.kind.value,
                "start": lab.start.isoformat(),
                "duration_s": round((lab.end - lab.start).total_seconds()),
                "expected": expected.value if expected else "none",
                "got": got.value if got else "none",
                "in_window": (got is not None) == (expected is not None),
                "right_severity": got == expected,
                "delay_s": round((min(events[i].alert.opened_at for i in hits) - lab.start).total_seconds())
                if hits
                else None,
                "closed_after_end_s": close_after,
                "carried_into_next_fault": bool(carried_into),
                # the robot at rest in that time: a resting robot's rows judge nothing, an event waits for work
                "rest_before_close_s": _rest_s(readings, lab.robot_id, close_end, last_close, producer.tick_seconds)
                if last_close is not None and last_close > close_end
                else None,
                "closed_in_time": not hits or (close_after is not None and close_after <= args.close_within_s),
                "detectors": ",".join(sorted({events[i].alert.detector for i in hits})),
                "closed_last_by": max(
                    (events[i] for i in hits if events[i].alert.closed_at is not None),
                    key=lambda e: e.alert.closed_at,
                    default=None,
                ).alert.detector
                if hits
                else None,
                # the load window's level at its farthest from normal (fault + grace) and the band's edge then:
                # how the fault's size compares with the axis's own swing
                "load_peak_ratio": round(reach[0], 3) if reach else None,
                "load_band_edge": round(reach[1], 3) if reach else None,
            }
        )
    stray = [
        e for i, e in enumerate(events) if i not in used and e.alert.opened_at < end - timedelta(seconds=args.grace_s)
    ]
    rows = []
    for kind in sorted({f["kind"] for f in faults}):
        group = [f for f in faults if f["kind"] == kind]
        delays = [f["delay_s"] for f in group if f["delay_s"] is not None]
        closes = [f["closed_after_end_s"] for f in group if f["closed_after_end_s"] is not None]
        rows.append(
            {
                "kind": kind,
                "faults": len(group),
                "raised_as_expected": f"{sum(f['in_window'] for f in group)}/{len(group)}",
                "right_severity": f"{sum(f['right_severity'] for f in group)}/{len(group)}",
                "delay_s_median": statistics.median(delays) if delays else None,
                "closed_in_time": f"{sum(f['closed_in_time'] for f in group)}/{len(group)}",
                "close_after_end_s_max": max(closes) if closes else None,
            }
        )
    misses = [f for f in faults if not (f["in_window"] and f["right_severity"] and f["closed_in_time"])]
    notes = "\n".join(
        f"- {line}"
        for line in (
            f"The demo's defaults: {producer.robots} synthetic robots (seed {producer.seed}), a tick every "
            f"{producer.tick_seconds:g} s, one fault of each kind per robot every {producer.fault_period_s:g} s of "
            f"feed; detectors {', '.join(alerts.detectors)}; prepared as the demo prepares them.",
            f"{args.hours:g} h of feed from {start.isoformat()}, {len(readings)} readings; faults ending in the last "
            f"{args.grace_s:g} s left out. Caught: an event of the fault's robot and axis opens between its start and "
            f"its end + {args.grace_s:g} s (dropout: no event expected); closed in time: that event closed at most "
            f"{args.close_within_s:g} s after the fault's end (an event still open when the next fault of its axis "
            f"starts: that fault's end; {sum(f['carried_into_next_fault'] for f in faults)} such).",
            f"Stray events (matching no fault): {len(stray)} "
            f"{dict(Counter((e.alert.detector, e.alert.severity.value) for e in stray))}"
            + "".join(f"; {_describe(e.alert)}" for e in stray)
            + ".",
            "Faults not raised as expected, at the wrong severity or closed late: "
            + (
                "; ".join(
                    f"{f['robot']} axis {f['axis']} {f['kind']} at {f['start']} ({f['duration_s']} s): expected "
                    f"{f['expected']}, got {f['got']} [{f['detectors']}], closed {f['closed_after_end_s']} s after"
                    + (f" ({f['rest_before_close_s']} s of it at rest)" if f["rest_before_close_s"] else "")
                    + (f" (last: {f['closed_last_by']})" if f["closed_last_by"] else "")
                    + (
                        f", load window at {f['load_peak_ratio']}x normal at most, band edge {f['load_band_edge']}x"
                        if f["load_peak_ratio"] is not None
                        else ""
                    )
                    for f in misses
                )
                or "none"
            ),
        )
    )
    print("\n".join(str(r) for r in rows))
    print(notes)
    name = "demo_faults" if args.fault_period is None else f"demo_faults_period{args.fault_period:g}"
    write_results(name, rows, notes=notes, extra={"faults": faults})
    return 0


def _rest_s(readings, robot_id: str, since: datetime, until: datetime, tick_s: float) -> int:
    """Seconds the robot was at rest (every axis at 0 or unread) between ``since`` and ``until``."""
    rows = (r for r in readings if r.robot_id == robot_id and since < r.ts <= until)
    return round(tick_s * sum(1 for r in rows if not any(r.currents.values())))


def _describe(alert) -> str:
    until = f"{alert.closed_at:%H:%M:%S}" if alert.closed_at else "still open"
    return (
        f"{alert.robot_id} axis {alert.axis} {alert.detector} {alert.severity.value} {alert.opened_at:%H:%M:%S}-{until}"
    )


def _same_axis(a, b) -> bool:
    return (a.robot_id, a.axis) == (b.robot_id, b.axis)


_LOAD_PEAKS: dict[int, tuple[float, float]] = {}  # id(label) -> (peak window ratio, band edge then)


def _watching_load(readings, engine: DetectorEngine, labels, grace_s: float):
    """The readings, noting after each one how far each faulty axis's load window is from normal, in the
    fault's direction (a rise but for a dropout), beside the band's edge at that reading."""
    windows = [(lab, lab.start, lab.end + timedelta(seconds=grace_s)) for lab in labels]
    for reading in readings:
        yield reading  # the engine has processed it when the generator resumes
        for lab, start, until in windows:
            if lab.robot_id != reading.robot_id or not start <= reading.ts <= until:
                continue
            robot = engine.robots.get(lab.robot_id)
            state = robot.axes.get(lab.axis) if robot is not None else None
            load = state.load if state is not None else None
            if load is None or not load.full:
                continue
            ratio, edge = load.ratio, load.edge
            best = _LOAD_PEAKS.get(id(lab))
            if best is None or ratio / edge > best[0] / best[1]:
                _LOAD_PEAKS[id(lab)] = (ratio, edge)


if __name__ == "__main__":
    raise SystemExit(main())
