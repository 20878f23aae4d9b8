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

from common.defaults import MAX_AXIS
from common.wire.schemas import DEFAULT_POLICY, Alert, AlertState, Reading, ReadingPolicy, iso_utc
from consumer_alerts.engine import CONTINUED_SCORE, DetectorEngine

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
    if len(wanted) > MAX_AXIS:  # the engine's axes; more would all be refused by the reading policy
        raise ValueError(
            f"{path}: {len(wanted)} columns to score, at most {MAX_AXIS}: choose them with --columns or --exclude"
        )
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
    """``[timestamp, score per column..., anomaly_score]`` for every row; columns are axes 1..n for the engine.

    A score is >= 0.5 exactly on the row where the service would raise an event on that column; the
    ``anomaly_score`` is the highest of the row (the robot has an event when one of its axes has). A row
    whose time does not move forward is skipped by the engine, as in the service: it scores what the last
    row scored, below the alert level. An empty cell scores 0 (no evidence), and so does a row the policy
    refuses (a time before its earliest date or ahead of the clock, a value past its bound), logged with
    the reason.
    """
    construct = Reading.model_construct
    last_time = None
    last = [0.0] * len(values.columns)
    for line, (ts, row) in enumerate(zip(times, values.itertuples(index=False, name=None), strict=True), start=2):
        when = ts.to_pydatetime()
        currents = {i + 1: (None if pd.isna(v) else float(v)) for i, v in enumerate(row)}
        refused = policy.problem(robot_id, when, currents) or _not_finite(currents)
        if refused:
            logger.warning("line %d scores 0: %s", line, refused)
            yield [iso_utc(when), *([0.0] * len(currents)), 0.0]
            continue
        if last_time is not None and when <= last_time:
            last = [min(s, CONTINUED_SCORE) for s in last]
        else:
            last_time = when
            engine.process(construct(robot_id=robot_id, ts=when, row=None, currents=currents))
            last = [(engine.scores(robot_id, axis) or 0.0) if v is not None else 0.0 for axis, v in currents.items()]
        yield [iso_utc(when), *(round(s, 6) for s in last), round(max(last, default=0.0), 6)]


def rows_not_forward(times: pd.Series) -> int:
    """Rows whose time is not after every earlier row's: ``score_rows`` judges none of them (each repeats the
    score before, below the alert level), so a file in reverse time order scored 0 everywhere, silently."""
    return int((times <= times.cummax().shift()).sum())


def _not_finite(currents: dict[int, float | None]) -> str | None:
    bad = [axis for axis, value in currents.items() if value is not None and not math.isfinite(value)]
    return f"column {bad[0]}: value is not a finite number" if bad else None


def write_scores(path: Path, names: list[str], rows: Iterable[list]) -> int:
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", *(f"{n}_score" for n in names), "anomaly_score"])
        for row in rows:
            writer.writerow(row)
            count += 1
    return count
