"""The history view: what the database holds, asked through ``common.store.queries`` in a worker thread.

It is built, in pieces, and loads when its tab is first opened (or on Refresh), not with every session, so
opening tabs costs the database nothing. A database error is shown here; the live view does not depend on the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from html import escape

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    CDSView,
    ColumnDataSource,
    DateFormatter,
    Div,
    GlyphRenderer,
    Legend,
    LegendItem,
    Line,
    NumberFormatter,
    Select,
)
from bokeh.plotting import figure
from sqlalchemy import Engine

from common.store import queries
from common.store.rollup import floor_minute
from dashboard.chart import axis_colours
from dashboard.history_data import ALL_ROBOTS, HistoryData, alert_table, health_html, smoothed_columns, summary_columns
from dashboard.settings import DashboardSettings
from dashboard.tables import PageColumns, read_only_table

logger = logging.getLogger(__name__)

RANGES = {
    "last hour": timedelta(hours=1),
    "last 6 hours": timedelta(hours=6),
    "last 24 hours": timedelta(days=1),
    "last 7 days": timedelta(days=7),
    "everything": None,
}


def range_start(end: datetime | None, span: timedelta | None) -> datetime | None:
    """The start of the minute ``span`` before ``end``: the range covers whole minutes from there, which
    the database answers from the per-minute rollup alone (no raw rows of a partial first minute)."""
    return floor_minute(end - span) if end is not None and span is not None else None


class HistoryView:
    def __init__(self, doc: Document, engine: Engine | None, settings: DashboardSettings) -> None:
        self.doc, self.engine, self.settings, self.axes = doc, engine, settings, list(settings.axes)
        self.robot = Select(title="robot", value=ALL_ROBOTS, options=[ALL_ROBOTS], width=160, name="history_robot")
        self.range = Select(
            title="time range (ending at the newest reading)",
            value="last 24 hours",
            options=list(RANGES),
            width=260,
            name="history_range",
        )
        self.refresh = Button(label="Refresh", width=100, name="history_refresh")
        self.refresh.on_click(self.load)
        self.note = Div(
            name="history_note",
            text="Open this tab to load the history."
            if engine
            else "<b>No database configured</b> (DATABASE_URL): the history view is off; the live view works.",
        )
        self.smooth = ColumnDataSource(smoothed_columns([], self.axes), name="history_smooth")
        self.summary = ColumnDataSource(summary_columns([]), name="history_summary")
        self.alerts = ColumnDataSource(alert_table([]), name="history_alerts")
        self.health = Div(name="history_health", sizing_mode="stretch_width")
        self.column = PageColumns()
        self.page = column(Div(text="loading…"), sizing_mode="stretch_width", name="history_page")

    def pieces(self) -> list[Callable[[], None]]:
        """The tab's content, added to ``page`` one piece per turn of the loop like the live view's
        (``dashboard.app``; the whole tab is ~200 models, ~140 ms to build), then the first load."""
        return [self._add_controls, self._add_chart, self._add_summary, self._add_alert_history, self.load]

    def _add_controls(self) -> None:
        self.page.children = [row(self.robot, self.range, column(Div(text="&nbsp;"), self.refresh)), self.note]

    def _add_chart(self) -> None:
        colours = axis_colours(self.axes)
        smooth = figure(
            x_axis_type="datetime",
            height=330,
            sizing_mode="stretch_width",
            title="1-minute mean per axis",
            y_axis_label="current (A)",
            tools="pan,xwheel_zoom,box_zoom,reset,save",
            name="history_chart",
        )
        # Bare renderers, as in the live chart: figure.line adds a non-selection and a muted copy of each glyph.
        view = CDSView()
        lines = {
            axis: GlyphRenderer(
                data_source=self.smooth, view=view, glyph=Line(x="ts", y=f"m{axis}", line_color=colours[axis])
            )
            for axis in self.axes
        }
        smooth.renderers.extend(lines.values())
        items = [LegendItem(label=f"axis {axis}", renderers=[line]) for axis, line in lines.items()]
        smooth.add_layout(Legend(items=items, click_policy="hide", label_text_font_size="8pt"), "right")
        smooth.toolbar.logo = None
        self.page.children.append(smooth)

    def _add_summary(self) -> None:
        bars = figure(
            x_range=[str(a) for a in self.axes],
            height=380,
            width=420,
            title="per axis: mean / max while active (A)",
            tools="save",
            name="history_bars",
        )
        bars.vbar(x="axis_name", top="max_active", source=self.summary, width=0.8, color="#c7c7c7", legend_label="max")
        bars.vbar(
            x="axis_name", top="mean_active", source=self.summary, width=0.5, color="#1f77b4", legend_label="mean"
        )
        bars.legend.location = "top_right"
        bars.toolbar.logo = None
        pct, amps = NumberFormatter(format="0.0%"), NumberFormatter(format="0.00")
        summary = read_only_table(
            self.summary,
            [
                self.column(field="axis", title="axis", width=40),
                self.column(field="rows", title="rows"),
                self.column(field="ok_null_share", title="OK null", formatter=pct),
                self.column(field="idle_share", title="idle", formatter=pct),
                self.column(field="mean_active", title="mean A", formatter=amps),
                self.column(field="max_active", title="max A", formatter=amps),
            ],
            "history_summary_table",
            height=380,
            width=520,
        )
        self.page.children.append(row(summary, bars))

    def _add_alert_history(self) -> None:
        when, amps = DateFormatter(format="%Y-%m-%d %H:%M:%S"), NumberFormatter(format="0.00")
        alerts = read_only_table(
            self.alerts,
            [
                self.column(field="opened", title="opened (UTC)", formatter=when),
                self.column(field="robot_id", title="robot"),
                self.column(field="axis", title="axis"),
                self.column(field="severity", title="severity"),
                self.column(field="state", title="state"),
                self.column(field="peak", title="peak A", formatter=amps),
                self.column(field="closed", title="closed (UTC)", formatter=when),
                self.column(field="ack", title="acknowledged"),
            ],
            "history_alert_table",
            height=220,
            sizing_mode="stretch_width",
        )
        self.page.children.extend(
            [Div(text="<b>data health &amp; coverage</b>"), self.health, Div(text="<b>alert history</b>"), alerts]
        )

    def load(self) -> None:
        if self.engine is None:
            return
        self.note.text = "loading…"
        robot = None if self.robot.value == ALL_ROBOTS else self.robot.value
        asyncio.get_running_loop().create_task(self._load(robot, RANGES[self.range.value]))

    async def _load(self, robot: str | None, span: timedelta | None) -> None:
        try:
            data = await asyncio.to_thread(self._query, robot, span)
        except Exception as exc:  # noqa: BLE001 - the page shows it; the live view carries on
            reason = f"{type(exc).__name__}: {str(exc)[:300]}"
            logger.warning("history: database error: %r", reason)
            text = f"<span style='color:#b00020'><b>database error</b>: {escape(reason)}</span>"
            self.doc.add_next_tick_callback(partial(setattr, self.note, "text", text))
            return
        self.doc.add_next_tick_callback(partial(self._show, data))

    def _query(self, robot: str | None, span: timedelta | None) -> HistoryData:
        """The whole minutes folded into the rollup, from the range's start on: each robot's newest minute
        or two are not yet (common.store.rollup), and the live view shows them. Reading nothing but the rollup
        keeps a fleet's Refresh within ~100 ms at 10 M readings (docs/benchmarks.md)."""
        with self.engine.connect() as conn:
            robots = sorted(queries.axes_of(conn))
            # The newest stored reading the server's clock believes: one dated 2100 must not move the range
            # away from every real reading.
            end = queries.newest_ts(conn, robot_id=robot, end=self.settings.latest_plausible())
            start = range_start(end, span)
            return HistoryData(
                robots=robots,
                start=start,
                end=end,
                smooth=(
                    queries.resample_1min(conn, start=start, end=end, robot_id=robot, folded_only=True)
                    if robot
                    else queries.fleet_minute_means(conn, start=start, end=end)
                ),
                summary=(
                    queries.axis_summary(conn, robot_id=robot, start=start, end=end, folded_only=True)
                    if robot
                    else queries.fleet_axis_summary(conn, start=start, end=end)
                ),
                health=queries.data_health(
                    conn,
                    robot_id=robot,
                    start=start,
                    end=end,
                    tick_seconds=self.settings.tick_seconds,
                    folded_only=True,
                ),
                alerts=queries.alert_history(conn, robot_id=robot, start=start, end=end, limit=500),
            )

    def _show(self, data: HistoryData) -> None:
        self.robot.options = [ALL_ROBOTS, *data.robots]
        self.smooth.data = smoothed_columns(data.smooth, self.axes)
        self.summary.data = summary_columns(data.summary)
        self.health.text = health_html(data.health)
        self.alerts.data = alert_table(data.alerts)
        start = f"{data.start:%Y-%m-%d %H:%M:%S}" if data.start else "the first reading"
        span = (
            "no readings stored yet"
            if data.end is None
            else f"{start} … {data.end:%Y-%m-%d %H:%M:%S} (UTC); charts and tables: whole minutes, up to a minute "
            "or two before the newest reading (the live view has those)"
        )
        self.note.text = f"history: {span}"
