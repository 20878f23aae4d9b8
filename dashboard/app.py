"""The Bokeh application: what one browser session gets (a live tab and a history tab)."""

from __future__ import annotations

from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import Div, TabPanel, Tabs
from sqlalchemy import Engine

from dashboard.feed import LiveFeed
from dashboard.history import HistoryView
from dashboard.live import LiveView


def document_factory(feed: LiveFeed, engine: Engine | None):
    def make_document(doc: Document) -> None:
        live = LiveView(doc, feed)
        history = HistoryView(doc, engine, feed.settings)
        # The history tab is built, and asks the database, only when somebody opens it: most sessions
        # only watch the live view, and building models is most of what a new session costs.
        holder = column(Div(text="loading…"), sizing_mode="stretch_width", name="history_holder")
        tabs = Tabs(
            tabs=[TabPanel(child=live.layout(), title="Live"), TabPanel(child=holder, title="History")],
            sizing_mode="stretch_width",
            name="tabs",
        )

        def open_history(_attr, _old, new) -> None:
            if new == 1 and not history.loaded:
                holder.children = [history.layout()]
                history.load()

        tabs.on_change("active", open_history)
        doc.add_root(tabs)
        doc.title = "axiswatch"
        feed.register(live)
        doc.add_periodic_callback(live.tick, 1000)
        live.chart.blink_in_browser(doc)
        doc.on_session_destroyed(lambda _context: feed.unregister(live))

    return make_document
