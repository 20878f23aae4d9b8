"""The offline twin: the service's engine run over a file at full speed.

``replay`` writes one row per event (its last state); ``score`` writes a per-row anomaly score in [0, 1]
for every numeric column of any CSV with a time column, and their combination, to compare the detectors
with others (e.g. on NAB).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from common.schemas import Alert, Reading, iso_utc
from consumer_alerts.engine import CONTINUED_SCORE, DetectorEngine

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
    times: pd.Series, values: pd.DataFrame, engine: DetectorEngine, *, robot_id: str = "score"
) -> Iterator[list]:
    """``[timestamp, score per column..., anomaly_score]`` for every row; columns are axes 1..n for the engine.

    A score is >= 0.5 exactly on the row where the service would raise an event on that column; the
    ``anomaly_score`` is the highest of the row (the robot has an event when one of its axes has). A row
    whose time does not move forward is skipped by the engine, as in the service: it scores what the last
    row scored, below the alert level. An empty cell scores 0 (no evidence).
    """
    construct = Reading.model_construct
    last_time = None
    last = [0.0] * len(values.columns)
    for ts, row in zip(times, values.itertuples(index=False, name=None), strict=True):
        when = ts.to_pydatetime()
        if last_time is not None and when <= last_time:
            last = [min(s, CONTINUED_SCORE) for s in last]
        else:
            last_time = when
            currents = {i + 1: (None if pd.isna(v) else float(v)) for i, v in enumerate(row)}
            engine.process(construct(robot_id=robot_id, ts=when, row=None, currents=currents))
            last = [(engine.scores(robot_id, axis) or 0.0) if v is not None else 0.0 for axis, v in currents.items()]
        yield [iso_utc(when), *(round(s, 6) for s in last), round(max(last, default=0.0), 6)]


def write_scores(path: Path, names: list[str], rows: Iterable[list]) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", *(f"{n}_score" for n in names), "anomaly_score"])
        for row in rows:
            writer.writerow(row)
            count += 1
    return count
