"""How a reading becomes one row of the chart's ColumnDataSource, computed once per reading for every session.

``a<n>`` is axis n's current, NaN for an "OK null" so the line has a gap instead of dropping to zero;
``lo<n>``/``hi<n>`` are the bottom and top of axis n's band when the chart is stacked (NaN where the axis is
null: the band has a gap and the axes above it stack on the ones below).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from common.wire.schemas import Alert, Reading

NAN = math.nan


def epoch_ms(ts) -> float:
    return ts.timestamp() * 1000.0


@functools.cache
def _axis_keys(axes: tuple[int, ...]) -> tuple[tuple[int, str, str, str], ...]:
    """Per axis, its column names: its current, and the bottom and top of its stacked band."""
    return tuple((axis, f"a{axis}", f"lo{axis}", f"hi{axis}") for axis in axes)


def chart_row(reading: Reading, axes: list[int]) -> dict[str, float]:
    """Made for every reading of the fleet (the window a tab opens on or switches to): its key names are
    made once, not 42 times a reading."""
    row = {"ts": epoch_ms(reading.ts)}
    running = 0.0
    currents = reading.currents
    for axis, line, low, high in _axis_keys(tuple(axes)):
        amps = currents.get(axis)
        if amps is None:
            row[line] = row[low] = row[high] = NAN
            continue
        row[line], row[low] = amps, running
        running += amps
        row[high] = running
    return row


def chart_keys(axes: list[int], *, stacked: bool) -> list[str]:
    keys = _axis_keys(tuple(axes))
    return ["ts"] + [key for _, line, low, high in keys for key in ((low, high) if stacked else (line,))]


def row_keys(axes: list[int]) -> list[str]:
    """Every column of a chart row: the time, the lines and the stacked bands."""
    return chart_keys(axes, stacked=False) + chart_keys(axes, stacked=True)[1:]


def to_columns(rows: list[dict[str, float]], keys: list[str]) -> dict[str, np.ndarray]:
    """A whole window: one binary array per column."""
    return {key: np.fromiter((row[key] for row in rows), dtype=float, count=len(rows)) for key in keys}


def to_lists(rows: list[dict[str, float]], keys: list[str]) -> dict[str, list[float]]:
    """The few rows of a stream: plain lists go inline in the message's JSON, where every array would be
    a binary buffer of its own, two websocket frames each (~90 frames a point, for every tab)."""
    return {key: [row[key] for row in rows] for key in keys}


SEVERITY_COLOURS = {"INFO": "#1f77b4", "ALERT": "#f28e2b", "ERROR": "#d62728"}  # INFO: news (a re-learn)


OPEN_BAND_MS = 30 * 86400 * 1000.0


def alert_columns(alerts: list[Alert]) -> dict[str, list]:
    """Alert events as table/chart columns. An open event's band runs on past the chart's right edge
    (the chart's range follows the readings, not the bands)."""
    cols: dict[str, list] = {
        k: []
        for k in (
            "event_id",
            "robot_id",
            "axis",
            "severity",
            "state",
            "detector",
            "opened",
            "closed",
            "x0",
            "x1",
            "y",
            "colour",
            "peak",
            "ack",
            "blink",
        )
    }
    for alert in alerts:
        opened = epoch_ms(alert.opened_at)
        closed = epoch_ms(alert.closed_at) if alert.closed_at else None
        cols["event_id"].append(alert.event_id)
        cols["robot_id"].append(alert.robot_id)
        cols["axis"].append(alert.axis)
        cols["severity"].append(alert.severity.value)
        cols["state"].append(alert.state.value)
        cols["detector"].append(alert.detector)
        cols["opened"].append(opened)
        cols["closed"].append(closed if closed is not None else NAN)
        cols["x0"].append(opened)
        cols["x1"].append(closed if closed is not None else opened + OPEN_BAND_MS)
        cols["y"].append(alert.peak_amps if alert.peak_amps is not None else (alert.threshold or 0.0))
        cols["colour"].append(SEVERITY_COLOURS.get(alert.severity.value, "#7f7f7f"))
        cols["peak"].append(alert.peak_amps if alert.peak_amps is not None else NAN)
        cols["ack"].append(ack_text(alert))
        cols["blink"].append("blink" if alert.acknowledged_at is None else "")
    return cols


TABLE_FIELDS = (
    "event_id",
    "opened",
    "robot_id",
    "axis",
    "severity",
    "state",
    "detector",
    "peak",
    "closed",
    "ack",
    "blink",
)
TABLE_NUMBERS = ("opened", "closed", "peak")


def table_columns(alerts: list[Alert]) -> dict[str, list | np.ndarray]:
    """The alert table's columns only, its times and peaks as float arrays: the whole table goes to every
    tab at each change, and an array is one binary buffer where a list is a JSON number per row to encode."""
    cols = alert_columns(alerts)
    return {k: np.asarray(cols[k], dtype=float) if k in TABLE_NUMBERS else cols[k] for k in TABLE_FIELDS}


def ack_text(alert: Alert) -> str:
    if alert.acknowledged_at is None:
        return ""
    return f"{alert.acknowledged_by or '?'} at {alert.acknowledged_at:%Y-%m-%d %H:%M:%S}Z"
