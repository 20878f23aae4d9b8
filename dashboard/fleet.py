"""The Fleet tab: every robot's axes at a glance, coloured by health, with the days left to the forecast
crossing, the most urgent robot first; a click on a cell opens that axis's trend, forecast cone, alerts and
maintenance history. Asked of the database (``common.store.fleet_health``) in a worker thread, like the
History tab; built when the tab is first opened, refreshed every ``DASHBOARD_FLEET_REFRESH_S`` while shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from html import escape

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    ColumnDataSource,
    DateFormatter,
    Div,
    FactorRange,
    HoverTool,
    NumberFormatter,
    Span,
    TabPanel,
    Tabs,
    TapTool,
)
from bokeh.plotting import figure
from sqlalchemy import Engine

from common.store import fleet_health
from common.store.fleet_health import FLEET_AXES
from common.store.maintenance import outcomes_per_detector
from dashboard.fleet_data import (
    OUTCOMES,
    Grid,
    alert_columns,
    detail_of,
    fleet_grid,
    grid_columns,
    legend_html,
    maintenance_columns,
    outcome_table,
)
from dashboard.settings import DashboardSettings
from dashboard.tables import PageColumns, read_only_table

logger = logging.getLogger(__name__)
ROW_PX = 30


def add_fleet_tab(
    doc: Document,
    tabs: Tabs,
    engine: Engine | None,
    settings: DashboardSettings,
    add_pieces: Callable[[list[Callable[[], None]]], None],
) -> None:
    """The Fleet tab's panel, built (``add_pieces``, as History is) when it is first opened."""
    holder = column(Div(text="loading…"), sizing_mode="stretch_width", name="fleet_holder")
    tabs.tabs.append(TabPanel(child=holder, title="Fleet"))
    index = len(tabs.tabs) - 1
    view: FleetView | None = None

    def open_fleet(_attr, _old, new) -> None:
        nonlocal view
        if new == index and view is None:
            view = FleetView(doc, engine, settings, shown=lambda: tabs.active == index)
            holder.children = [view.page]
            add_pieces(view.pieces())

    tabs.on_change("active", open_fleet)


class FleetView:
    def __init__(
        self, doc: Document, engine: Engine | None, settings: DashboardSettings, shown: Callable[[], bool]
    ) -> None:
        self.doc, self.engine, self.settings, self.shown = doc, engine, settings, shown
        self.grid = Grid(robots=[], cells=[], reference=None)
        self.opened: tuple[str, int] | None = None  # the axis whose detail is shown
        self.loading = False
        self.refresh = Button(label="Refresh", width=100, name="fleet_refresh")
        self.refresh.on_click(self.load)
        self.note = Div(
            name="fleet_note",
            text="loading…"
            if engine
            else "<b>No database configured</b> (DATABASE_URL): the fleet view is off; the live view works.",
        )
        self.cells = ColumnDataSource(grid_columns(self.grid), name="fleet_cells")
        self.cells.selected.on_change("indices", self._clicked)
        self.hours = ColumnDataSource({"ts": [], "median": []}, name="fleet_hours")
        self.days = ColumnDataSource({"ts": [], "median": []}, name="fleet_days")
        self.cone = ColumnDataSource({"x": [], "y": []}, name="fleet_cone")
        self.forecast = ColumnDataSource({"x": [], "y": []}, name="fleet_forecast")
        self.alerts = ColumnDataSource(alert_columns([]), name="fleet_alerts")
        self.maintenance = ColumnDataSource(maintenance_columns([]), name="fleet_maintenance")
        self.outcomes = ColumnDataSource(outcome_table([]), name="fleet_outcomes")
        self.detail_title = Div(
            text="Click a cell to see that axis's trend, alerts and maintenance.", name="fleet_detail"
        )
        self.limit = Span(dimension="width", line_color="#d73027", line_dash="dashed", line_width=2, visible=False)
        self.column = PageColumns()
        self.page = column(Div(text="loading…"), sizing_mode="stretch_width", name="fleet_page")

    def pieces(self) -> list[Callable[[], None]]:
        return [self._add_grid, self._add_detail, self._add_outcomes, self._first_load]

    def _add_grid(self) -> None:
        self.grid_plot = figure(
            x_range=FactorRange(factors=[str(a) for a in FLEET_AXES]),
            y_range=FactorRange(factors=[]),
            height=120,
            width=560,
            title="health per robot and axis: days left to the forecast crossing (most urgent first)",
            x_axis_label="axis",
            x_axis_location="above",
            tools="",
            toolbar_location=None,
            name="fleet_grid",
        )
        cells = self.grid_plot.rect(
            x="axis",
            y="robot_id",
            width=0.94,
            height=0.88,
            source=self.cells,
            fill_color="colour",
            line_color="colour",
            selection_line_color="black",
            selection_line_width=3,
            nonselection_fill_alpha=1.0,
            nonselection_line_alpha=1.0,
        )
        self.grid_plot.text(
            x="axis",
            y="robot_id",
            text="label",
            source=self.cells,
            text_align="center",
            text_baseline="middle",
            text_font_size="11px",
            nonselection_text_alpha=1.0,
        )
        tooltips = [
            ("robot", "@robot_id"),
            ("axis", "@axis"),
            ("health", "@health"),
            ("days left", "@label"),
            ("80 % interval", "@interval"),
            ("level / limit", "@level / @limit"),
            ("forecast of", "@updated"),
        ]
        self.grid_plot.add_tools(TapTool(renderers=[cells]), HoverTool(renderers=[cells], tooltips=tooltips))
        self.grid_plot.grid.visible = False
        self.grid_plot.axis.major_tick_line_color = None
        self.grid_plot.axis.axis_line_color = None
        self.page.children = [
            row(self.refresh, self.note),
            Div(text=legend_html(), sizing_mode="stretch_width"),
            self.grid_plot,
        ]

    def _add_detail(self) -> None:
        trend = figure(
            x_axis_type="datetime",
            height=320,
            sizing_mode="stretch_width",
            title="health level (deviation from the learned normal) and the forecast crossing of the limit",
            y_axis_label="deviation",
            tools="pan,xwheel_zoom,box_zoom,reset,save",
            name="fleet_trend",
        )
        trend.patch(x="x", y="y", source=self.cone, fill_color="#fc8d59", fill_alpha=0.25, line_alpha=0,
                    legend_label="80 % interval of the crossing")  # fmt: skip
        trend.scatter(x="ts", y="median", source=self.hours, size=3, color="#9ecae1", legend_label="hourly median")
        trend.line(x="ts", y="median", source=self.days, line_width=2, color="#08519c", legend_label="daily median")
        trend.line(x="x", y="y", source=self.forecast, line_dash="dashed", line_width=2, color="#d94801",
                   legend_label="forecast")  # fmt: skip
        trend.add_layout(self.limit)
        trend.legend.location = "top_left"
        trend.toolbar.logo = None
        when, amps = DateFormatter(format="%Y-%m-%d %H:%M"), NumberFormatter(format="0.00")
        alert_table = read_only_table(
            self.alerts,
            [
                self.column(field="opened", title="opened (UTC)", formatter=when),
                self.column(field="detector", title="detector"),
                self.column(field="severity", title="severity"),
                self.column(field="state", title="state"),
                self.column(field="peak", title="peak", formatter=amps),
                self.column(field="closed", title="closed (UTC)", formatter=when),
                self.column(field="ack", title="acknowledged"),
                self.column(field="outcome", title="outcome"),
                self.column(field="note", title="note"),
            ],
            "fleet_alert_table",
            height=180,
            sizing_mode="stretch_width",
        )
        maintenance_table = read_only_table(
            self.maintenance,
            [
                self.column(field="at", title="at (UTC)", formatter=when),
                self.column(field="what", title="what"),
                self.column(field="action", title="action"),
                self.column(field="outcome", title="outcome"),
                self.column(field="note", title="note"),
                self.column(field="by", title="by"),
            ],
            "fleet_maintenance_table",
            height=150,
            sizing_mode="stretch_width",
        )
        self.page.children.extend(
            [
                self.detail_title,
                trend,
                Div(text="<b>alerts of this axis</b>"),
                alert_table,
                Div(text="<b>maintenance history</b> (the maintenance log and the acknowledged alerts)"),
                maintenance_table,
            ]
        )

    def _add_outcomes(self) -> None:
        pct = NumberFormatter(format="0%")
        table = read_only_table(
            self.outcomes,
            [
                self.column(field="detector", title="detector", width=220),
                self.column(field="alerts", title="alerts", width=90),
                self.column(field="judged", title="judged", width=90),
                *(self.column(field=o, title=o.replace("_", " "), width=90) for o in OUTCOMES),
                self.column(field="real_share", title="judged real", formatter=pct, width=90),
            ],
            "fleet_outcome_table",
            height=160,
            width=900,
        )
        self.page.children.extend(
            [Div(text="<b>alerts judged real per detector</b> (of those given an outcome)"), table]
        )

    def _first_load(self) -> None:
        self.load()
        interval_ms = round(self.settings.dashboard_fleet_refresh_s * 1000)
        self.doc.add_periodic_callback(self._tick, interval_ms)

    def _tick(self) -> None:
        if self.shown() and not self.loading:
            self.load()

    def load(self) -> None:
        if self.engine is None:
            return
        self.loading = True
        asyncio.get_running_loop().create_task(self._load(self.opened))

    async def _load(self, opened: tuple[str, int] | None) -> None:
        try:
            grid, outcomes, detail = await asyncio.to_thread(self._query, opened)
        except Exception as exc:  # noqa: BLE001 - the page shows it; the other tabs carry on
            self._failed(exc)
            return
        self.doc.add_next_tick_callback(partial(self._show, grid, outcomes, opened, detail))

    def _query(self, opened: tuple[str, int] | None):
        with self.engine.connect() as conn:
            grid = fleet_grid(fleet_health.fleet_forecasts(conn))
            outcomes = outcomes_per_detector(conn)
            detail = None if opened is None else fleet_health.axis_detail(conn, robot_id=opened[0], axis=opened[1])
        return grid, outcomes, detail

    def _failed(self, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        logger.warning("fleet: database error: %r", reason)
        text = f"<span style='color:#b00020'><b>database error</b>: {escape(reason)}</span>"

        def show() -> None:
            self.loading = False
            self.note.text = text

        self.doc.add_next_tick_callback(show)

    def _show(self, grid: Grid, outcomes: list[dict], opened: tuple[str, int] | None, detail: dict | None) -> None:
        self.loading = False
        self.grid = grid
        self.grid_plot.y_range.factors = list(reversed(grid.robots))  # the most urgent at the top
        self.grid_plot.height = 60 + ROW_PX * max(len(grid.robots), 1)
        self.cells.data = grid_columns(grid)
        keys = [(c.robot_id, c.axis) for c in grid.cells]
        self.cells.selected.indices = [keys.index(self.opened)] if self.opened in keys else []
        self.outcomes.data = outcome_table(outcomes)
        when = f"{grid.reference:%Y-%m-%d %H:%M} UTC" if grid.reference else "no forecast stored yet"
        self.note.text = (
            f"{len(grid.robots)} robots; days left counted from the newest forecast ({escape(when)}); "
            f"refreshed every {self.settings.dashboard_fleet_refresh_s:g} s while shown"
        )
        if detail is not None and opened == self.opened:
            self._show_detail(opened, detail)

    def _clicked(self, _attr, _old, new: list[int]) -> None:
        if not new or new[0] >= len(self.grid.cells):
            return
        cell = self.grid.cells[new[0]]
        if (cell.robot_id, cell.axis) == self.opened:
            return
        self.opened = (cell.robot_id, cell.axis)
        self.detail_title.text = f"loading {escape(cell.robot_id)} · axis {cell.axis}…"
        asyncio.get_running_loop().create_task(self._load_detail(self.opened))

    async def _load_detail(self, opened: tuple[str, int]) -> None:
        try:
            detail = await asyncio.to_thread(self._query_detail, opened)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            return
        self.doc.add_next_tick_callback(partial(self._show_detail, opened, detail))

    def _query_detail(self, opened: tuple[str, int]) -> dict:
        with self.engine.connect() as conn:
            return fleet_health.axis_detail(conn, robot_id=opened[0], axis=opened[1])

    def _show_detail(self, opened: tuple[str, int], data: dict) -> None:
        if opened != self.opened:  # another cell was clicked meanwhile
            return
        detail = detail_of(*opened, data, self.grid.reference)
        self.detail_title.text = detail.title
        self.hours.data, self.days.data = detail.hours, detail.days
        self.cone.data, self.forecast.data = detail.cone, detail.forecast
        self.limit.visible = detail.limit is not None
        if detail.limit is not None:
            self.limit.location = detail.limit
        self.alerts.data = detail.alerts
        self.maintenance.data = detail.maintenance
