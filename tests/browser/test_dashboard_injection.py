"""No text from data or users runs as markup in a real browser (Debian's headless Chromium): a robot id and an
alert's detector carrying a script are shown literally, as are the "acknowledge failed" and History "database
error" texts built from exception messages (a user name with markup: test_dashboard_signin.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from common.store.db import make_engine
from dashboard.settings import DashboardSettings
from tests.dashboard_support import ServerThread, alert, reading, wait_for

pytestmark = pytest.mark.browser
LIVE = "Bokeh.documents[0].get_model_by_name('{}')"


def payload(mark: str) -> str:
    """Markup that, if it ran, would record ``mark`` in window.__pwned and open an alert dialog."""
    return f"<img src=x onerror=window.__pwned='{mark}';alert(1)>"


@pytest.fixture
def server(sqlite_url):
    # Any robot id passes here: the reading policy would refuse the payload id before the page sees it, and
    # this test is about the page escaping whatever does reach it.
    settings = DashboardSettings(
        _env_file=None,
        bus="memory",
        window_rows=60,
        dashboard_push_ms=50,
        database_url=sqlite_url,
        robot_id_pattern=".+",
        dashboard_sign_in=False,  # a user name with markup: test_dashboard_signin.py
    )
    engine = make_engine(sqlite_url, log_version=False)
    with ServerThread(settings, engine=engine) as running:
        yield running
    engine.dispose()


def open_dashboard(page, url: str) -> None:
    """Until the whole page is in: it arrives in pieces once drawn, the alert table last."""
    page.goto(url)
    page.wait_for_function(
        f"() => window.Bokeh && Bokeh.documents.length > 0 && {LIVE.format('alert_table')}", timeout=30_000
    )


def nothing_ran(page) -> None:
    page.wait_for_timeout(500)  # an image error handler runs as soon as the (broken) image fails to load
    assert page.evaluate("() => window.__pwned") is None
    assert page.dialogs == []


def shown_literally(page, text: str, where: str = "body") -> None:
    page.locator(where).get_by_text(text, exact=False).first.wait_for(timeout=20_000)


def test_robot_id_and_detector_are_shown_as_text(server, page):
    t0 = datetime.now(UTC) - timedelta(seconds=40)
    server.publish_readings([reading(i, t0=t0) for i in range(20)])
    evil_robot = payload("robot")
    try:  # a schema that refuses such robot ids keeps them off the page altogether, which is fine too
        readings = [reading(i, robot=evil_robot, t0=t0) for i in range(5)]
    except ValidationError:
        readings = []
    if readings:
        server.publish_readings(readings)
        wait_for(lambda: evil_robot in server.feed.robots, what="the feed to take the odd robot")
        server.publish(server.settings.alerts_topic, alert("e-robot", robot=evil_robot))
    event = alert("e-detector").model_copy(update={"detector": payload("detector")})
    server.publish(server.settings.alerts_topic, event)
    open_dashboard(page, server.url)
    page.wait_for_function(f"() => {LIVE.format('alert_source')}.data.event_id.includes('e-detector')")
    shown_literally(page, payload("detector"), ".slick-cell")
    if readings:
        shown_literally(page, evil_robot, ".slick-cell")  # the alert table's robot column
        options = page.locator("select").first.locator("option").all_text_contents()
        assert evil_robot in options
    nothing_ran(page)


def test_acknowledge_failed_and_database_error_texts_are_shown_as_text(server, page, monkeypatch):
    async def refused(*_args, **_kwargs):
        raise RuntimeError(payload("ack-failed"))

    def database_refuses(*_args, **_kwargs):
        raise RuntimeError(payload("db-error"))

    server.feed.acknowledge = refused
    monkeypatch.setattr("dashboard.history.HistoryView._query", database_refuses)
    server.publish(server.settings.alerts_topic, alert("e-1"))
    open_dashboard(page, server.url)
    page.wait_for_function(f"() => {LIVE.format('alert_source')}.data.event_id.includes('e-1')")
    page.locator(".slick-cell", has_text="zscore").first.click()
    page.locator("select", has=page.locator("option", has_text="false alarm")).select_option(label="false alarm")
    page.get_by_role("button", name="Acknowledge selected").click()
    shown_literally(page, f"acknowledge failed: {payload('ack-failed')}")
    page.get_by_text("History", exact=True).click()
    shown_literally(page, f"database error: RuntimeError: {payload('db-error')}")
    nothing_ran(page)
