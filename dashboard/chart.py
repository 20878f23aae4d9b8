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
    Model,
    Scatter,
    SingleIntervalTicker,
    VStrip,
)
from bokeh.palettes import Category20, Turbo256
from bokeh.plotting import figure

BLINK_MS = 700
BLINKING = "alert_marks_blinking"
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


def blink_in_browser(doc: Document, anchor: Model) -> None:
    """Unacknowledged events' markers blink, in the browser alone: from the server it was a message to every
    tab every BLINK_MS, and the glyph's alpha is of no use to the server. The chart is added after the page
    is drawn (``dashboard.app``), so the timer looks its markers up by name through ``anchor``, a model of
    the page from the start."""
    doc.js_on_event(
        DocumentReady,
        CustomJS(
            args={"anchor": anchor},
            code=f"""
        setInterval(() => {{
            const marks = anchor.document?.get_model_by_name("{BLINKING}")
            if (marks != null)
                marks.glyph.fill_alpha = {{value: marks.glyph.fill_alpha.value > 0.5 ? 0.15 : 1.0}}
        }}, {BLINK_MS})""",
        ),
    )


class LiveChart:
    """The frame (axes, tools, legend) is made first; the lines, a few axes at a time, and the alert markers
    are added after (``add_lines``, ``follow_lines``, ``add_alert_marks``): a page is built in pieces that
    each hold the server's event loop briefly (``dashboard.app``)."""

    def __init__(self, source: ColumnDataSource, axes: list[int]) -> None:
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
        self.view = CDSView()  # one view for every line (none filters)
        self.lines: dict = {}
        self.bands: dict = {}  # made on first use: building models is most of what a new session costs
        self.items: list[LegendItem] = []
        self.legend = Legend(click_policy="hide", title="click to hide", label_text_font_size="9pt")
        self.figure.add_layout(self.legend, "right")
        self.hover = HoverTool(
            renderers=[], tooltips=[("time", "@ts{%F %T}"), ("amps", "$y{0.00}")], formatters={"@ts": "datetime"}
        )
        self.figure.add_tools(self.hover)
        self.stacked = False

    def add_lines(self, axes: list[int]) -> None:
        # Renderers made directly, not by figure.line: that adds a non-selection and a muted copy of every
        # glyph, which the browser derives by itself ("auto"). A page load builds them all on the event
        # loop, and they were a third of what it cost.
        lines = {
            a: GlyphRenderer(
                data_source=self.source,
                view=self.view,
                glyph=Line(x="ts", y=f"a{a}", line_color=self.colours[a], line_width=1.6),
            )
            for a in axes
        }
        self.lines.update(lines)
        self.figure.renderers.extend(lines.values())

    def follow_lines(self) -> None:
        """Once every line is in: the legend, the hover tool and the window follow them (an alert band must
        not stretch the window). (Made here, not with each line: a model is sent to the browser with every
        change that refers to it until the piece that made it is over.)"""
        self.items = [LegendItem(label=f"axis {a}", renderers=[line]) for a, line in self.lines.items()]
        self.legend.items = self.items
        self.hover.renderers = list(self.lines.values())
        self._fit_to_readings()

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

    def add_alert_marks(self, alerts: ColumnDataSource) -> None:
        # Made directly like the lines: figure.vstrip/scatter add a non-selection and a muted copy of each.
        strips = VStrip(x0="x0", x1="x1", fill_color="colour", fill_alpha=0.14, line_alpha=0)
        marks = {"x": "x0", "y": "y", "marker": "triangle", "fill_color": "colour", "line_color": "black"}
        self.blinking = GlyphRenderer(
            data_source=alerts,
            view=CDSView(filter=GroupFilter(column_name="blink", group="blink")),
            glyph=Scatter(size=14, **marks),
            name=BLINKING,
        )
        self.blinking.glyph.syncable = False  # its alpha changes in the browser alone (blink_in_browser)
        steady = GlyphRenderer(
            data_source=alerts,
            view=CDSView(filter=GroupFilter(column_name="blink", group="")),
            glyph=Scatter(size=12, fill_alpha=0.9, **marks),
            name="alert_marks",
        )
        self.figure.renderers.extend([GlyphRenderer(data_source=alerts, glyph=strips), self.blinking, steady])

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

    def mark_stale(self, stale: bool, title: str) -> None:
        self.figure.title.text = title
        self.figure.background_fill_color = "#e6e6e6" if stale else "#ffffff"
        self.figure.title.text_color = "#b00020" if stale else "#222222"
