"""Texts and small tables of the status strip: connection, lag, rate, newest reading, latest, 1-minute peak."""

from __future__ import annotations

import time
from collections.abc import Iterable
from html import escape

from dashboard.columns import epoch_ms
from dashboard.feed import LiveFeed
from dashboard.stats import AxisValue, peak_of


def status_html(feed: LiveFeed, connected: bool) -> str:
    s = feed.status
    pill = "color:white;padding:2px 8px;border-radius:3px"
    if connected:
        badge = f"<span style='background:#2ca02c;{pill}'>LIVE</span>"
    else:
        badge = f"<span style='background:#b00020;{pill}'>DISCONNECTED</span> {escape(_why(feed))}"
    newest = f"{s.newest_ts:%Y-%m-%d %H:%M:%S}Z" if s.newest_ts else "—"
    lag = "—" if s.lag is None else str(s.lag)
    return (
        f"<div style='font-size:14px'>{badge} &nbsp; consumer lag <b>{lag}</b> &nbsp; "
        f"readings/s <b>{feed.readings_per_s():.1f}</b> &nbsp; newest reading <b>{newest}</b> &nbsp; "
        f"sessions <b>{feed.listener_count}</b></div>"
    )


def _why(feed: LiveFeed) -> str:
    s = feed.status
    if s.error:
        return f"Kafka: {s.error}; reconnecting by itself"
    if s.last_message is None:
        return "waiting for the first reading"
    quiet = time.monotonic() - s.last_message
    return f"no data for {quiet:.0f} s (Kafka down or the feed stopped); reconnecting by itself"


def latest_columns(latest: dict[int, AxisValue]) -> dict[str, list]:
    values = [latest[a] for a in sorted(latest)]
    return {
        "axis": [v.axis for v in values],
        "ts": [epoch_ms(v.ts) for v in values],
        "amps": ["OK null" if v.amps is None else f"{v.amps:.2f}" for v in values],
    }


def peak_text(recent: Iterable[AxisValue]) -> str:
    """``recent``: the peak of each reading of the last minute (``RobotWindow.recent``)."""
    peak = peak_of(recent)
    if peak is None:
        return "<b>1-minute peak</b>: —"
    return f"<b>1-minute peak</b>: axis {peak.axis}, <b>{peak.amps:.2f} A</b> at {peak.ts:%H:%M:%S}Z"
