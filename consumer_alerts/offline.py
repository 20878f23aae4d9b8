"""The offline twin: the service's engine run over a file at full speed.

``replay`` writes one row per event (its last state); ``score`` writes a per-row anomaly score in [0, 1]
for every numeric column of any CSV with a time column, to compare the detectors with others.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from common.schemas import DEFAULT_POLICY, Alert, Reading, ReadingPolicy, iso_utc
from consumer_alerts.engine import DetectorEngine

logger = logging.getLogger(__name__)
ALERT_COLUMNS = ("robot_id", "axis", "severity", "detector", "opened_at", "closed_at", "peak_amps", "threshold")


def replay(readings: Iterable[Reading], engine: DetectorEngine) -> list[Alert]:
    """Every event the engine raises over ``readings``, in its last state, in the order they opened."""
    events: dict[str, Alert] = {}
    for reading in readings:
        for alert in engine.process(reading):
            events[alert.event_id] = alert
    return sorted(events.values(), key=lambda a: (a.opened_at, a.robot_id, a.axis, a.detector))


def write_alerts_csv(alerts: Iterable[Alert], path: Path) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ALERT_COLUMNS)
        for a in alerts:
            writer.writerow(
                [
                    a.robot_id,
                    a.axis,
                    a.severity.value,
                    a.detector,
                    iso_utc(a.opened_at),
                    iso_utc(a.closed_at) if a.closed_at else "",
                    _num(a.peak_amps),
                    _num(a.threshold),
                ]
            )
            count += 1
    return count


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.5g}"


def read_table(path: Path, time_column: str, columns: list[str] | None) -> tuple[pd.Series, pd.DataFrame]:
    """Any CSV: its time column as UTC instants (naive = UTC) and the numeric columns to score."""
    frame = pd.read_csv(path)
    if time_column not in frame.columns:
        raise ValueError(f"{path}: no column {time_column!r} (columns: {', '.join(map(str, frame.columns))})")
    times = pd.to_datetime(frame[time_column], utc=True, errors="coerce", format="mixed")
    if times.isna().any():
        bad = int(times.isna().idxmax())
        raise ValueError(f"{path}: {time_column!r} row {bad + 1}: {frame[time_column].iloc[bad]!r} is not a time")
    wanted = columns or [c for c in frame.columns if c != time_column and pd.api.types.is_numeric_dtype(frame[c])]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {', '.join(missing)}")
    if not wanted:
        raise ValueError(f"{path}: no numeric column to score")
    values = frame[wanted].apply(pd.to_numeric, errors="coerce")
    return times, values


def score_rows(
    times: pd.Series,
    values: pd.DataFrame,
    engine: DetectorEngine,
    *,
    robot_id: str = "score",
    policy: ReadingPolicy = DEFAULT_POLICY,
) -> Iterator[list]:
    """``[timestamp, score per column...]`` per row; columns are numbered axes 1..n for the engine. A row
    the policy refuses (a time before its earliest date or ahead of the clock, a value past its bound) is
    logged with the reason and gets no score, like one whose time does not move forward."""
    construct = Reading.model_construct
    last = None
    for line, (ts, row) in enumerate(zip(times, values.itertuples(index=False, name=None), strict=True), start=2):
        when = ts.to_pydatetime()
        currents = {i + 1: (None if pd.isna(v) else float(v)) for i, v in enumerate(row)}
        refused = policy.problem(robot_id, when, currents) or _not_finite(currents)
        if refused:
            logger.warning("line %d not scored: %s", line, refused)
            yield [iso_utc(when), *([""] * len(currents))]
            continue
        if last is not None and when <= last:  # time not moving forward: the engine skips the row
            yield [iso_utc(when), *([""] * len(currents))]
            continue
        last = when
        engine.process(construct(robot_id=robot_id, ts=when, row=None, currents=currents))
        scores = [engine.scores(robot_id, axis) if v is not None else None for axis, v in currents.items()]
        yield [iso_utc(when), *("" if s is None else round(s, 4) for s in scores)]


def _not_finite(currents: dict[int, float | None]) -> str | None:
    bad = [axis for axis, value in currents.items() if value is not None and not math.isfinite(value)]
    return f"column {bad[0]}: value is not a finite number" if bad else None


def write_scores(path: Path, names: list[str], rows: Iterable[list]) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", *(f"{n}_score" for n in names)])
        for row in rows:
            writer.writerow(row)
            count += 1
    return count
