"""One browser session's live view. It only reads the shared feed; every change to its document happens in a
callback the Bokeh server runs for this session (next-tick or periodic), never straight from the feed task."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from html import escape

from bokeh.core.properties import without_property_validation
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.model import Model
from bokeh.models import (
    Button,
    CheckboxGroup,
    ColumnDataSource,
    CustomJS,
    DateFormatter,
    Div,
    HTMLTemplateFormatter,
    InlineStyleSheet,
    NumberFormatter,
    RadioButtonGroup,
    Select,
    Spinner,
    TextInput,
)

from common.store.users import User, audit_acknowledgement
from common.wire.schemas import ACK_NOTE_CHARS, AckOutcome, Alert
from dashboard.auth import LOGIN_URL, LOGOUT_URL, page_user
from dashboard.chart import LiveChart
from dashboard.columns import alert_columns, table_columns, to_columns, to_lists
from dashboard.feed import LiveFeed
from dashboard.status import latest_columns, peak_text, status_html
from dashboard.tables import PageColumns, read_only_table

logger = logging.getLogger(__name__)

# A stylesheet is a model, and a model belongs to one document: each session gets its own.
BLINK_CSS = """
.blink { animation: aw-blink 1s steps(2, start) infinite; color: #b00020; font-weight: bold; }
@keyframes aw-blink { to { visibility: hidden; } }
"""
TICK_MODES = ["fixed", "auto"]
ALERTS_EVERY_S = 0.25
LINES_PER_PIECE = 5  # ~15 models: a piece of the page in a few tens of ms


class LiveView:
    """The page arrives in pieces: ``__init__`` and :meth:`layout` make the skeleton (the status strip) that the
    page load sends; :meth:`pieces` add the chart, the side panel and the alert table one at a time once the
    browser has drawn the skeleton (``dashboard.app``), and the last piece starts the ticking."""

    def __init__(self, doc: Document, feed: LiveFeed) -> None:
        self.doc, self.feed, settings = doc, feed, feed.settings
        self.robot = feed.default_robot()
        self.signed_in = page_user(doc, settings)
        self.window_rows = settings.window_rows
        self.keys = feed.row_keys
        # Empty until the page is drawn (the first piece fills them from the feed): a page load never drawn
        # gets nothing from the feed.
        self.drawn = False
        self.source = ColumnDataSource(to_columns([], self.keys), name="live_source")
        self.chart_alerts = ColumnDataSource(alert_columns([]), name="chart_alerts")
        self.table_alerts = ColumnDataSource(table_columns([]), name="alert_source")
        self.latest = ColumnDataSource(latest_columns({}), name="latest_source")
        self.column = PageColumns()
        self.status = Div(name="status", sizing_mode="stretch_width")
        self.status.text = status_html(feed, feed.connected())
        self.peak = Div(name="peak")
        self.page = column(self.status, Div(text="loading…"), sizing_mode="stretch_width", name="live_page")
        self._shown = None
        self._rewinds = 0  # the shown robot's ``RobotWindow.rewinds`` when its window was last sent whole
        self._alerts_due, self._alerts_shown_at, self._mine_changed = False, float("-inf"), False

    def layout(self):
        return self.page

    def pieces(self) -> list[Callable[[], None]]:
        """What the page still needs, in the order it is added, each small enough for one turn of the loop."""
        axes, n = self.feed.axes, LINES_PER_PIECE
        lines = [partial(self._add_lines, axes[i : i + n]) for i in range(0, len(axes), n)]
        return [
            self._add_chart,
            self._add_controls,
            *lines,
            self._finish_chart,
            self._add_side_panel,
            self._add_alert_panel,
            self._start_ticking,
        ]

    # -- the pieces ----------------------------------------------------------------------------------
    def _add_chart(self) -> None:
        # The window and the events as they are now; from here on the feed's batches are streamed in.
        self._show_window()
        self._refresh_alerts()
        self.drawn = True
        settings = self.feed.settings
        self.chart = LiveChart(self.source, self.feed.axes)
        self.chart.set_ticks(settings.x_axis_ticks, self.window_rows, settings.tick_seconds)
        self.chart_row = row(self.chart.figure, sizing_mode="stretch_width")
        self.page.children = [self.status, self.chart_row]

    def _add_controls(self) -> None:
        self._controls(self.feed.settings)
        controls = row(self.robot_select, self.rows_spinner, column(Div(text="x-axis ticks"), self.ticks), self.stacked)
        self.page.children.insert(1, controls)

    def _add_lines(self, axes: list[int]) -> None:
        self.chart.add_lines(axes)

    def _finish_chart(self) -> None:
        self.chart.follow_lines()
        self.chart.add_alert_marks(self.chart_alerts)

    def _add_side_panel(self) -> None:
        latest = read_only_table(
            self.latest,
            [
                self.column(field="axis", title="axis", width=40),
                self.column(field="ts", title="latest (UTC)", formatter=DateFormatter(format="%H:%M:%S"), width=90),
                self.column(field="amps", title="A", width=60),
            ],
            "latest_table",
            height=380,
            width=300,
        )
        self.chart_row.children.append(column(Div(text="<b>latest per axis</b>"), latest, self.peak, width=320))

    def _add_alert_panel(self) -> None:
        self._alert_table()
        self.page.children.append(
            column(
                Div(text=f"<b>alerts</b> (select rows, choose the outcome, acknowledge){self._who_html()}"),
                self.alert_table,
                row(self.outcome, self.note, column(Div(text="&nbsp;"), self.ack_button), self.message),
                sizing_mode="stretch_width",
            )
        )

    def models(self) -> list[Model]:
        """The models this view holds, in its document or not yet (``dashboard.memory.untangle_all``)."""
        return [v for v in (*vars(self).values(), *vars(self.column).values()) if isinstance(v, Model)]

    def _start_ticking(self) -> None:
        self.chart.set_stacked(self.feed.settings.stacked)
        self.tick()
        self.doc.add_periodic_callback(self.tick, 1000)

    def _controls(self, settings) -> None:
        self.robot_select = Select(title="robot", value=self.robot, options=self._robots(), name="robot", width=160)
        self.robot_select.on_change("value", lambda _a, _o, new: self._select_robot(new))
        self.rows_spinner = Spinner(
            title="window rows",
            low=10,
            high=settings.window_rows,
            step=10,
            value=self.window_rows,
            width=110,
            name="window_rows",
        )
        self.rows_spinner.on_change("value", lambda _a, _o, new: self._set_window(int(new)))
        self.ticks = RadioButtonGroup(labels=TICK_MODES, active=TICK_MODES.index(settings.x_axis_ticks), name="ticks")
        self.ticks.on_change("active", lambda _a, _o, _n: self._set_ticks())
        self.stacked = CheckboxGroup(labels=["stacked areas"], active=[0] if settings.stacked else [], name="stacked")
        self.stacked.on_change("active", lambda _a, _o, new: self.chart.set_stacked(bool(new)))

    def _alert_table(self) -> None:
        # <%- %> escapes (<%= %> would not): only the blink class is markup here.
        state = HTMLTemplateFormatter(template='<span class="<%- blink %>"><%- value %></span>')
        when = DateFormatter(format="%Y-%m-%d %H:%M:%S")
        columns = [
            self.column(field="opened", title="opened (UTC)", formatter=when, width=150),
            self.column(field="robot_id", title="robot", width=80),
            self.column(field="axis", title="axis", width=40),
            self.column(field="severity", title="severity", formatter=state, width=70),
            self.column(field="state", title="state", width=60),
            self.column(field="detector", title="detector"),
            self.column(field="peak", title="peak A", formatter=NumberFormatter(format="0.00"), width=60),
            self.column(field="closed", title="closed (UTC)", formatter=when, width=150),
            self.column(field="ack", title="acknowledged", width=200),
        ]
        self.alert_table = read_only_table(
            self.table_alerts,
            columns,
            "alert_table",
            height=220,
            sizing_mode="stretch_width",
            stylesheets=[InlineStyleSheet(css=BLINK_CSS)],
        )
        outcomes = [("", "choose…")] + [(o.value, o.value.replace("_", " ")) for o in AckOutcome]
        self.outcome = Select(title="outcome", value="", options=outcomes, name="ack_outcome", width=140)
        self.note = TextInput(
            title="note", placeholder="what was found", max_length=ACK_NOTE_CHARS, name="ack_note", width=260
        )
        may = self.signed_in is not None and self.signed_in.user.may_acknowledge
        self.ack_button = Button(
            label="Acknowledge selected", button_type="warning", name="ack", width=200, disabled=not may
        )
        self.ack_button.on_click(self._acknowledge)
        self.message = Div(name="ack_message")
        if self.feed.settings.dashboard_sign_in:
            # The server cannot navigate a tab: an expired sign-in sets this tag, the browser goes to the login.
            self.message.js_on_change("tags", CustomJS(code=f"window.location.assign('{LOGIN_URL}?next=/')"))

    def _who_html(self) -> str:
        if not self.feed.settings.dashboard_sign_in:
            return " — sign-in is off: you are <i>anonymous</i>"
        if self.signed_in is None:
            return f" — not signed in: <a href='{LOGIN_URL}'>sign in</a>"
        user = self.signed_in.user
        reads = "" if user.may_acknowledge else ", may read, not acknowledge"
        who = f"<b>{escape(user.name)}</b> ({escape(user.role)}{reads})"
        return f" — signed in as {who} · <a href='{LOGOUT_URL}'>sign out</a>"

    # -- data in ------------------------------------------------------------------------------------
    def deliver(self, rows: dict, alerts: list[Alert]) -> None:
        """Called by the feed on the server loop: queue the change for this session's document."""
        if not self.drawn:
            return
        mine = rows.get(self.robot)
        if mine:
            window = self.feed.robots.get(self.robot)
            if window is not None and window.rewinds != self._rewinds:
                # the robot's clock came back from ahead: the window dropped its rows from ahead, sent whole (as
                # it is now: the batches after it are streamed after it)
                self._rewinds = window.rewinds
                columns = self.feed.window_columns(self.robot, self.keys, self.window_rows)
                self.doc.add_next_tick_callback(partial(self._replace_window, columns))
            else:
                self.doc.add_next_tick_callback(partial(self._stream, mine))
        self._mine_changed |= any(a.robot_id == self.robot for a in alerts)
        if alerts and not self._alerts_due:
            # The table is all the fleet's events, sent whole: in an alert storm (events arrive a few at a
            # time, several batches a tick) it goes out at most every ALERTS_EVERY_S, always with the latest.
            self._alerts_due = True
            wait_s = self._alerts_shown_at + ALERTS_EVERY_S - time.monotonic()
            if wait_s > 0:
                self.doc.add_timeout_callback(self._show_alerts, wait_s * 1000)
            else:
                self.doc.add_next_tick_callback(self._show_alerts)

    # The per-tick callbacks of every tab, and the first piece, set columns built here; Bokeh's check of each
    # value (every number of the window: ~8,000) was ~40 % of the cost of sending the alert table and ~8 ms of
    # the chart's piece. Hence without_property_validation on them.
    @without_property_validation
    def _stream(self, rows: list) -> None:
        self.source.stream(to_lists(rows, self.keys), rollover=self.window_rows)

    @without_property_validation
    def _show_alerts(self) -> None:
        self._alerts_due, self._alerts_shown_at = False, time.monotonic()
        self._refresh_alerts(chart=self._mine_changed)

    @without_property_validation
    def _show_window(self) -> None:
        window = self.feed.robots.get(self.robot)
        self._rewinds = window.rewinds if window is not None else 0
        self.source.data = self.feed.window_columns(self.robot, self.keys, self.window_rows)

    @without_property_validation
    def _replace_window(self, columns: dict) -> None:
        self.source.data = columns

    @without_property_validation
    def _refresh_alerts(self, *, chart: bool = True) -> None:
        """The table, and the chart's events when ``chart`` (they only change with this robot's events)."""
        alerts, table = self.feed.alert_table()
        if chart:
            self._mine_changed = False
            self.chart_alerts.data = alert_columns([a for a in alerts if a.robot_id == self.robot])
        self.table_alerts.data = table

    # -- widgets ------------------------------------------------------------------------------------
    def _robots(self) -> list[str]:
        return sorted(set(self.feed.robots) | {self.robot})

    def _select_robot(self, robot: str) -> None:
        self.robot = robot
        self._show_window()
        self._refresh_alerts()
        self._shown = None  # title, latest and peak follow the new robot now, not at the next tick
        self.tick()

    def _set_window(self, rows: int) -> None:
        self.window_rows = rows
        self._show_window()
        self._set_ticks()

    def _set_ticks(self) -> None:
        mode = TICK_MODES[self.ticks.active]
        self.chart.set_ticks(mode, self.window_rows, self.feed.settings.tick_seconds)

    def _check_signed_in(self) -> bool:
        """Still signed in? An expired sign-in sends the tab to the login page."""
        if self.signed_in is not None and not self.signed_in.expired():
            return True
        if self.feed.settings.dashboard_sign_in and not self.message.tags:
            self.message.text = f"Your sign-in has expired: <a href='{LOGIN_URL}'>sign in again</a>."
            self.message.tags = ["expired"]
        return False

    def _acknowledge(self) -> None:
        # The button is disabled for viewers, but a click can still arrive (a crafted message): checked here.
        if not self._check_signed_in():
            return
        user = self.signed_in.user
        if not user.may_acknowledge:
            self.message.text = f"Role {escape(user.role)} may read, not acknowledge."
            return
        ids = [self.table_alerts.data["event_id"][i] for i in self.table_alerts.selected.indices]
        if not ids or not self.outcome.value:
            self.message.text = "Select at least one alert and choose the outcome first."
            return
        # value_input follows every keystroke; value only changes on Enter or leaving the field.
        note = (self.note.value_input or self.note.value or "").strip()[:ACK_NOTE_CHARS] or None
        self.message.text = f"acknowledging {len(ids)} event(s)…"
        task = self._publish_acks(ids, user, AckOutcome(self.outcome.value), note)
        asyncio.get_running_loop().create_task(task)

    async def _publish_acks(self, ids: list[str], user: User, outcome: AckOutcome, note: str | None) -> None:
        # Runs outside the document lock: a slow or absent broker must not freeze this page's updates.
        at = datetime.now(UTC)
        try:
            for event_id in ids:
                await asyncio.wait_for(self.feed.acknowledge(event_id, user.name, at, outcome, note), 15)
                # Published: the audit row follows, as the API writes it (no database: no audit, no sign-in).
                if self.feed.engine is not None:
                    await audit_acknowledgement(self.feed.engine, user, at, event_id, outcome, note)
            text = f"acknowledged by {escape(user.name)} at {at:%H:%M:%S}Z"
        except Exception as exc:  # noqa: BLE001 - shown on the page
            reason = str(exc) or type(exc).__name__
            logger.warning("acknowledge failed: %r", reason)
            text = f"<span style='color:#b00020'>acknowledge failed: {escape(reason)}</span>"
        self.doc.add_next_tick_callback(partial(setattr, self.message, "text", text))

    def _show_robot(self, robot) -> None:
        """Latest per axis and the 1-minute peak. Data the feed let through but these cannot show must not
        stop the page from being built (or ticking): the robot's side panel says so instead."""
        try:
            latest, peak = latest_columns(robot.latest if robot else {}), peak_text(robot.recent if robot else [])
        except Exception as exc:  # noqa: BLE001 - one robot's bad data; the rest of the page goes on
            logger.warning("live view: robot %r cannot be shown: %r", self.robot, f"{type(exc).__name__}: {exc}")
            latest, peak = latest_columns({}), "<b>1-minute peak</b>: — (this robot's data cannot be shown)"
        self.latest.data, self.peak.text = latest, peak

    # -- once a second -----------------------------------------------------------------------------
    @without_property_validation
    def tick(self) -> None:
        self._check_signed_in()
        connected = self.feed.connected()
        self.status.text = status_html(self.feed, connected)
        robot = self.feed.robots.get(self.robot)
        shown = (robot.newest if robot else None, connected)
        if shown != self._shown:  # send only what changed: twenty tabs, twenty websockets
            self._shown = shown
            self._show_robot(robot)
            stale = "" if connected else " — STALE: not live"
            self.chart.mark_stale(not connected, f"robot {self.robot}, last {self.window_rows} readings{stale}")
        if self.robot_select.options != self._robots():
            self.robot_select.options = self._robots()
