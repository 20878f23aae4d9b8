"""Pure shaping of ``common.store.queries`` results into the history view's columns and texts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from dashboard.columns import epoch_ms

ALL_ROBOTS = "all robots"
NAN = math.nan


@dataclass
class HistoryData:
    robots: list[str]
    start: datetime | None
    end: datetime | None
    smooth: list[dict]
    summary: list[dict]
    health: list[dict]
    alerts: list[dict]


def smoothed_columns(rows: list[dict], axes: list[int]) -> dict[str, list[float]]:
    """Minute x axis means (averaged over robots when rows of several are given; ``fleet_minute_means`` gives
    them averaged already). A missing minute becomes a NaN row, so the line has a gap there instead of a
    straight line across a stoppage."""
    sums: dict[datetime, dict[int, list[float]]] = {}
    for r in rows:
        if r["axis_id"] in axes and r["mean_amps"] is not None:
            sums.setdefault(r["minute"], {}).setdefault(r["axis_id"], []).append(r["mean_amps"])
    cols: dict[str, list[float]] = {"ts": [], **{f"m{a}": [] for a in axes}}
    previous = None
    for minute in sorted(sums):
        if previous is not None and minute - previous > timedelta(minutes=1):
            _append(cols, axes, previous + timedelta(minutes=1), {})
        _append(cols, axes, minute, sums[minute])
        previous = minute
    return cols


def _append(cols: dict, axes: list[int], minute: datetime, values: dict[int, list[float]]) -> None:
    cols["ts"].append(epoch_ms(minute))
    for a in axes:
        v = values.get(a)
        cols[f"m{a}"].append(sum(v) / len(v) if v else NAN)


def summary_columns(rows: list[dict]) -> dict[str, list]:
    """Per axis (summed over robots): rows, OK-null share, idle share, mean and max while active."""
    by_axis: dict[int, list[dict]] = {}
    for r in rows:
        by_axis.setdefault(r["axis_id"], []).append(r)
    cols: dict[str, list] = {
        k: [] for k in ("axis", "axis_name", "rows", "ok_null_share", "idle_share", "mean_active", "max_active")
    }
    for axis, parts in sorted(by_axis.items()):
        total = sum(p["rows"] for p in parts)
        values = sum(p["non_null"] for p in parts)
        idle = sum((p["idle_share"] or 0) * p["non_null"] for p in parts)
        active = [
            (p["mean_active_amps"], p["non_null"] * (1 - (p["idle_share"] or 0)))
            for p in parts
            if p["mean_active_amps"] is not None
        ]
        weight = sum(w for _, w in active)
        maxima = [p["max_active_amps"] for p in parts if p["max_active_amps"] is not None]
        cols["axis"].append(axis)
        cols["axis_name"].append(str(axis))
        cols["rows"].append(total)
        cols["ok_null_share"].append((total - values) / total if total else NAN)
        cols["idle_share"].append(idle / values if values else NAN)
        cols["mean_active"].append(sum(m * w for m, w in active) / weight if weight else NAN)
        cols["max_active"].append(max(maxima) if maxima else NAN)
    return cols


def alert_table(rows: list[dict]) -> dict[str, list]:
    ack = [
        f"{r['acknowledged_by'] or '?'} at {r['acknowledged_at']:%Y-%m-%d %H:%M}" if r.get("acknowledged_at") else ""
        for r in rows
    ]
    return {
        "opened": [epoch_ms(r["opened_at"]) for r in rows],
        "closed": [epoch_ms(r["closed_at"]) if r["closed_at"] else NAN for r in rows],
        "robot_id": [r["robot_id"] for r in rows],
        "axis": [r["axis"] for r in rows],
        "severity": [r["severity"] for r in rows],
        "state": [r["state"] for r in rows],
        "peak": [r["peak_amps"] if r["peak_amps"] is not None else NAN for r in rows],
        "ack": ack,
    }


def health_html(robots: list[dict]) -> str:
    if not robots:
        return "no robot in the database yet"
    parts = []
    for h in robots:
        coverage = "—" if h["coverage"] is None else f"{h['coverage']:.1%}"
        gaps = ", ".join(
            f"{g['start']:%m-%d %H:%M:%S} +{g['length_s']:.0f} s"
            for g in sorted(h["gaps"], key=lambda g: -g["length_s"])[:5]
        )
        parts.append(
            f"<li><b>{escape(h['robot_id'])}</b>: {h['readings']} readings of {h['expected_readings']} expected "
            f"(coverage <b>{coverage}</b>), {_when(h['first_ts'])} … {_when(h['last_ts'])} UTC; "
            f"<b>{h['gap_count']}</b> gaps ({h['gap_total_s']:.0f} s){': ' + gaps if gaps else ''}; "
            f"axes never seen: {', '.join(map(str, h['axes_never_seen'])) or 'none'}</li>"
        )
    return "<ul style='margin:0'>" + "".join(parts) + "</ul>"


def _when(ts: datetime | None) -> str:
    return f"{ts:%Y-%m-%d %H:%M:%S}" if ts else "—"
