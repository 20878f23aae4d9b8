"""The live chart: one line (or stacked band) per axis of the schema lock, alert bands and markers."""

from __future__ import annotations

from bokeh.document import Document
from bokeh.events import DocumentReady
from bokeh.models import (
    CDSView,
    ColumnDataSource,
    CustomJS,
    DataRange1d,
    DatetimeTicker,
    DatetimeTickFormatter,
    GlyphRenderer,
    GroupFilter,
    HoverTool,
    Legend,
    LegendItem,
    Line,
    SingleIntervalTicker,
)
from bokeh.palettes import Category20, Turbo256
from bokeh.plotting import figure

BLINK_MS = 700
NICE_INTERVALS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def axis_colours(axes: list[int]) -> dict[int, str]:
    palette = (
        Category20[20] if len(axes) <= 20 else [Turbo256[int(i * 255 / (len(axes) - 1))] for i in range(len(axes))]
    )
    # Category20 pairs a dark and a light shade: take the dark ones first so neighbouring axes differ.
    order = list(palette[0::2]) + list(palette[1::2]) if len(axes) <= 20 else palette
    return {axis: order[i % len(order)] for i, axis in enumerate(axes)}


def fixed_ticker(window_rows: int, tick_seconds: float) -> SingleIntervalTicker:
    """Ticks at whole multiples of one interval (about six per window): they scroll with the data instead of
    being re-chosen, so they never flip-flop between two spacings."""
    wanted = window_rows * tick_seconds / 6
    interval = next((s for s in NICE_INTERVALS_S if s >= wanted), NICE_INTERVALS_S[-1])
    return SingleIntervalTicker(interval=interval * 1000, num_minor_ticks=5)


class LiveChart:
    def __init__(self, source: ColumnDataSource, alerts: ColumnDataSource, axes: list[int], *, stacked: bool) -> None:
        self.figure = figure(
            name="live_chart",
            x_axis_type="datetime",
            height=430,
            sizing_mode="stretch_width",
            tools="pan,xwheel_zoom,box_zoom,reset,save",
            y_axis_label="current (A)",
            title="live",
            x_axis_label="time (UTC)",
            x_range=DataRange1d(only_visible=True),
            y_range=DataRange1d(only_visible=True),
        )
        self.figure.toolbar.logo = None
        self.source, self.colours = source, axis_colours(axes)
        # Renderers made directly, not by figure.line: that adds a non-selection and a muted copy of every
        # glyph, which the browser derives by itself ("auto"); one view for all (none filters). A page load
        # builds them all on the event loop, and they were a third of what it cost.
        view = CDSView()
        self.lines = {
            a: GlyphRenderer(
                data_source=source, view=view, glyph=Line(x="ts", y=f"a{a}", line_color=self.colours[a], line_width=1.6)
            )
            for a in axes
        }
        self.figure.renderers.extend(self.lines.values())
        self.bands: dict = {}  # made on first use: building models is most of what a new session costs
        self.items = [LegendItem(label=f"axis {a}", renderers=[self.lines[a]]) for a in axes]
        legend = Legend(items=self.items, click_policy="hide", title="click to hide", label_text_font_size="9pt")
        self.figure.add_layout(legend, "right")
        # The window is set by the readings; an alert band must not stretch it.
        self._fit_to_readings()
        self._alert_glyphs(alerts)
        self.figure.add_tools(
            HoverTool(
                renderers=list(self.lines.values()),
                tooltips=[("time", "@ts{%F %T}"), ("amps", "$y{0.00}")],
                formatters={"@ts": "datetime"},
            )
        )
        self.stacked = False
        self.set_stacked(stacked)

    def _fit_to_readings(self) -> None:
        self.figure.x_range.renderers = self.figure.y_range.renderers = [*self.lines.values(), *self.bands.values()]

    def _make_bands(self) -> None:
        for axis in self.lines:
            self.bands[axis] = self.figure.varea(
                "ts",
                y1=f"lo{axis}",
                y2=f"hi{axis}",
                source=self.source,
                fill_color=self.colours[axis],
                fill_alpha=0.75,
                visible=False,
            )
        self._fit_to_readings()

    def _alert_glyphs(self, alerts: ColumnDataSource) -> None:
        fig = self.figure
        fig.vstrip(x0="x0", x1="x1", source=alerts, fill_color="colour", fill_alpha=0.14, line_alpha=0)
        blinking = CDSView(filter=GroupFilter(column_name="blink", group="blink"))
        steady = CDSView(filter=GroupFilter(column_name="blink", group=""))
        self.blinking = fig.scatter(
            "x0",
            "y",
            source=alerts,
            view=blinking,
            marker="triangle",
            size=14,
            fill_color="colour",
            line_color="black",
            name="alert_marks_blinking",
        )
        fig.scatter(
            "x0",
            "y",
            source=alerts,
            view=steady,
            marker="triangle",
            size=12,
            fill_color="colour",
            line_color="black",
            fill_alpha=0.9,
            name="alert_marks",
        )

    def set_stacked(self, stacked: bool) -> None:
        """Swap lines and bands, keeping each axis's shown/hidden state from the legend."""
        if stacked == self.stacked:
            return
        if not self.bands:
            self._make_bands()
        old, new = (self.lines, self.bands) if stacked else (self.bands, self.lines)
        for item, axis in zip(self.items, old, strict=True):
            hidden = not old[axis].visible
            old[axis].visible = False
            new[axis].visible = not hidden
            item.renderers = [new[axis]]
        self.stacked = stacked

    def set_ticks(self, mode: str, window_rows: int, tick_seconds: float) -> None:
        axis = self.figure.xaxis[0]
        if mode == "fixed":
            # One label format whatever the zoom: Bokeh guesses the format from the spacing of the labelled
            # ticks, and with a single one in view it guesses "days". The date is in the status strip.
            axis.ticker = fixed_ticker(window_rows, tick_seconds)
            axis.formatter = DatetimeTickFormatter(
                **{
                    level: "%H:%M:%S"
                    for level in (
                        "milliseconds",
                        "seconds",
                        "minsec",
                        "minutes",
                        "hourmin",
                        "hours",
                        "days",
                        "months",
                        "years",
                    )
                }
            )
        else:
            axis.ticker, axis.formatter = DatetimeTicker(), DatetimeTickFormatter()

    def blink_in_browser(self, doc: Document) -> None:
        """Unacknowledged events' markers blink, in the browser alone: from the server it was a message
        to every tab every BLINK_MS, and the glyph's alpha is of no use to the server."""
        glyph = self.blinking.glyph
        glyph.syncable = False  # the browser's changes are not sent back
        doc.js_on_event(
            DocumentReady,
            CustomJS(
                args={"glyph": glyph},
                code=f"""
            setInterval(() => {{
                glyph.fill_alpha = {{value: glyph.fill_alpha.value > 0.5 ? 0.15 : 1.0}}
            }}, {BLINK_MS})""",
            ),
        )

    def mark_stale(self, stale: bool, title: str) -> None:
        self.figure.title.text = title
        self.figure.background_fill_color = "#e6e6e6" if stale else "#ffffff"
        self.figure.title.text_color = "#b00020" if stale else "#222222"
