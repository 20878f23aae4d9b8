"""The offline twin: the service's engine run over a file at full speed.

``replay`` writes one row per change the service would publish (open, escalate, peak, close); ``score``
writes a per-row anomaly score in [0, 1] for every numeric column of any CSV with a time column, to compare
the detectors with others.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from common.wire.schemas import DEFAULT_POLICY, Alert, AlertState, Reading, ReadingPolicy, iso_utc
from consumer_alerts.engine import DetectorEngine

logger = logging.getLogger(__name__)
ALERT_COLUMNS = ("robot_id", "axis", "severity", "detector", "opened_at", "closed_at", "peak_amps", "threshold")
# One row per published change: today's columns, then which event, its state, when it changed and how.
CHANGE_COLUMNS = (*ALERT_COLUMNS, "event_id", "state", "changed_at", "change")


@dataclass(frozen=True, slots=True)
class Change:
    """One publication of an event, as the service would send it: the reading's time and what changed."""

    changed_at: datetime
    alert: Alert
    change: str  # open, escalate, peak (the peak grew past PEAK_STEP), close


def replay(readings: Iterable[Reading], engine: DetectorEngine) -> list[Change]:
    """Every change the engine publishes over ``readings`` (open, escalate, peak, close), in order."""
    changes: list[Change] = []
    last: dict[str, Alert] = {}
    for reading in readings:
        for alert in engine.process(reading):
            changes.append(Change(reading.ts, alert, _what_changed(last.get(alert.event_id), alert)))
            last[alert.event_id] = alert
    return changes


def _what_changed(before: Alert | None, after: Alert) -> str:
    if after.state is AlertState.CLOSED:
        return "close"
    if before is None:
        return "open"
    return "escalate" if after.severity != before.severity else "peak"


def write_alerts_csv(changes: Iterable[Change], path: Path) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CHANGE_COLUMNS)
        for c in changes:
            a = c.alert
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
                    a.event_id,
                    a.state.value,
                    iso_utc(c.changed_at),
                    c.change,
                ]
            )
            count += 1
    return count


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.5g}"


def read_table(
    path: Path,
    time_column: str,
    columns: list[str] | None = None,
    *,
    exclude: list[str] | None = None,
    sep: str | None = None,
) -> tuple[pd.Series, pd.DataFrame]:
    """Any CSV: its time column as UTC instants (naive = UTC) and the numeric columns to score.

    ``sep`` ``,`` or ``;`` (default: sniffed from the header). The scored columns are ``columns`` (default:
    every numeric one but the time column) less ``exclude`` (e.g. a label column, which is numeric too).
    """
    sep = sep or sniff_separator(path)
    frame = pd.read_csv(path, sep=sep)
    if time_column not in frame.columns:
        raise ValueError(f"{path}: no column {time_column!r} (columns: {', '.join(map(str, frame.columns))})")
    times = pd.to_datetime(frame[time_column], utc=True, errors="coerce", format="mixed")
    if times.isna().any():
        bad = int(times.isna().idxmax())
        raise ValueError(f"{path}: {time_column!r} row {bad + 1}: {frame[time_column].iloc[bad]!r} is not a time")
    named = [c for c in (columns or []) + (exclude or []) if c not in frame.columns]
    if named:
        raise ValueError(f"{path}: no column(s) {', '.join(named)}")
    values = frame.drop(columns=[time_column]).apply(_numbers, decimal_comma=sep == ";")
    # A column is numeric when every non-empty cell is a number (so a label like "normal" is not scored).
    numeric = [c for c in values.columns if values[c].notna().any() and values[c].count() == frame[c].count()]
    wanted = [c for c in (columns or numeric) if c not in set(exclude or ()) and c != time_column]
    not_numeric = [c for c in wanted if values[c].isna().all()]
    if not_numeric:
        raise ValueError(f"{path}: no number in column(s) {', '.join(not_numeric)}")
    if not wanted:
        raise ValueError(f"{path}: no numeric column to score")
    return times, values[wanted]


def sniff_separator(path: Path) -> str:
    """``;`` when the header has more of them than commas (outside quotes), else ``,``."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = f.readline()
    unquoted = "".join(part for i, part in enumerate(header.split('"')) if i % 2 == 0)
    return ";" if unquoted.count(";") > unquoted.count(",") else ","


def _numbers(column: pd.Series, *, decimal_comma: bool) -> pd.Series:
    """A column as floats (NaN where a cell is not a number); ``1,5`` reads as 1.5 in a ``;`` file."""
    if decimal_comma and not pd.api.types.is_numeric_dtype(column):
        column = column.astype("string").str.replace(",", ".", regex=False)
    return pd.to_numeric(column, errors="coerce")


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
