"""Sign-in to the dashboard in a real browser (Debian's Chromium through Playwright), the users in a real
PostgreSQL: the page needs sign-in; an operator acknowledges under their own name with an outcome and a note,
which the alert table, the topic, consumer_db and the audit table show; a viewer cannot acknowledge, not even
with the button forced on; wrong passwords are refused and, at the limit, locked out for a while; an expired
sign-in and a sign-out go back to the login page; a user name carrying markup is shown as text."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from common.store.db import make_engine
from common.store.tables import alerts, api_audit
from common.store.users import add_user
from common.wire.schemas import Alert
from consumer_db.migrate import migrate
from dashboard.settings import DashboardSettings
from tests.dashboard_support import ServerThread, alert, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]
LIVE = "Bokeh.documents[0].get_model_by_name('{}')"
EVIL = "<img src=x onerror=window.__pwned=1;alert(1)>"
PASSWORDS = {"otto": "otto-password", "vera": "vera-password", f"eve {EVIL}": "eve-password"}
ROLES = {"otto": "operator", "vera": "viewer", f"eve {EVIL}": "operator"}


@pytest.fixture
def start_server(pg_url):
    """``start_server(**settings)``: the dashboard and consumer_db on one in-process bus, PostgreSQL behind
    both, with the users otto (operator), vera (viewer) and an operator whose name carries markup."""
    from consumer_db.service import run as run_sink
    from consumer_db.settings import ConsumerDbSettings

    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    with engine.begin() as conn:
        for name, password in PASSWORDS.items():
            add_user(conn, name, ROLES[name], password, datetime.now(UTC))
    sink_settings = ConsumerDbSettings(_env_file=None, bus="memory", database_url=pg_url, sink_batch_ms=50)
    running: list[ServerThread] = []

    async def sink(bus, stop):
        await run_sink(sink_settings, bus=bus, stop=stop, engine=engine)

    def start(**overrides) -> ServerThread:
        settings = DashboardSettings(
            _env_file=None, bus="memory", dashboard_push_ms=50, database_url=pg_url, **overrides
        )
        server = ServerThread(settings, engine=engine, alongside=sink).__enter__()
        running.append(server)
        return server

    yield start
    for server in running:
        server.__exit__(None, None, None)
    engine.dispose()


def js(page, expression: str):
    return page.evaluate(f"() => {expression}")


def submit_login(page, name: str, password: str) -> int:
    """Fill the login form and send it; the HTTP status of the answer."""
    page.locator("#name").fill(name)
    page.locator("#password").fill(password)
    with page.expect_response(lambda r: "/login" in r.url and r.request.method == "POST") as answer:
        page.locator("#sign-in").click()
    return answer.value.status


def sign_in(page, server: ServerThread, name: str) -> None:
    """Open the dashboard, which sends the browser to the login page; sign in; wait for the whole page."""
    page.goto(server.url)
    assert "/login" in page.url
    assert submit_login(page, name, PASSWORDS[name]) == 302
    page.wait_for_function(
        f"() => window.Bokeh && Bokeh.documents.length > 0 && {LIVE.format('alert_table')}", timeout=30_000
    )


def published_acks(server: ServerThread, event_id: str) -> list[Alert]:
    published = [Alert.from_bytes(m.value) for log in server.bus._log(server.settings.alerts_topic) for m in log]
    return [a for a in published if a.event_id == event_id and a.acknowledged_by]


def audit_rows(server: ServerThread) -> list[dict]:
    with server.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(api_audit)).mappings()]


def acknowledge_first_row(page, outcome: str, note: str = "") -> None:
    page.locator(".slick-cell", has_text="zscore").first.click()
    page.locator("select", has=page.locator("option", has_text="false alarm")).select_option(
        label=outcome.replace("_", " ")
    )
    if note:
        page.locator("input[placeholder='what was found']").fill(note)
        page.locator("input[placeholder='what was found']").press("Enter")
    page.get_by_role("button", name="Acknowledge selected").click()


def show_alert(page, server: ServerThread) -> Alert:
    event = alert("e-" + uuid.uuid4().hex[:6], at=datetime.now(UTC))
    server.publish(server.settings.alerts_topic, event)
    page.wait_for_function(f"() => {LIVE.format('alert_source')}.data.event_id.includes('{event.event_id}')")
    return event


def test_the_page_needs_sign_in_and_an_operator_acknowledges_under_their_name(start_server, page):
    server = start_server()
    answer = page.request.get(server.url, max_redirects=0)
    assert answer.status == 302 and answer.headers["location"].startswith("/login")
    sign_in(page, server, "otto")
    page.get_by_text("signed in as otto (operator)").wait_for(timeout=10_000)
    assert js(page, LIVE.format("ack") + ".disabled") is False
    event = show_alert(page, server)

    acknowledge_first_row(page, "false_alarm", "belt slipped, tightened")
    page.locator(".slick-cell", has_text="otto at").first.wait_for(timeout=20_000)  # the table's column
    page.get_by_text("acknowledged by otto at").wait_for(timeout=10_000)
    [acked] = published_acks(server, event.event_id)
    assert (acked.acknowledged_by, acked.ack_outcome, acked.ack_note) == (
        "otto",
        "false_alarm",
        "belt slipped, tightened",
    )
    [audit] = wait_for(lambda: audit_rows(server), what="the audit row")
    assert {k: audit[k] for k in ("user_name", "action", "event_id", "outcome", "note")} == {
        "user_name": "otto",
        "action": "acknowledge",
        "event_id": event.event_id,
        "outcome": "false_alarm",
        "note": "belt slipped, tightened",
    }
    assert audit["at"] == acked.acknowledged_at
    stored = wait_for(
        lambda: (r := _stored(server, event.event_id)) and r["acknowledged_by"] and r, what="the acknowledgement"
    )
    assert (stored["acknowledged_by"], stored["ack_outcome"]) == ("otto", "false_alarm")
    assert page.errors == []


def _stored(server: ServerThread, event_id: str):
    with server.engine.connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.event_id == event_id)).mappings().first()


def test_acknowledging_needs_a_selection_and_an_outcome(start_server, page):
    server = start_server()
    sign_in(page, server, "otto")
    show_alert(page, server)
    page.get_by_role("button", name="Acknowledge selected").click()
    page.get_by_text("Select at least one alert and choose the outcome first.").wait_for(timeout=10_000)
    page.locator(".slick-cell", has_text="zscore").first.click()
    page.get_by_role("button", name="Acknowledge selected").click()
    page.wait_for_timeout(500)
    assert "choose the outcome" in js(page, LIVE.format("ack_message") + ".text")
    assert not any(a.acknowledged_by for log in server.bus._log(server.settings.alerts_topic) for a in map(
        lambda m: Alert.from_bytes(m.value), log))  # fmt: skip
    assert audit_rows(server) == []


def test_a_viewer_cannot_acknowledge_even_with_the_button_forced_on(start_server, page):
    server = start_server()
    sign_in(page, server, "vera")
    page.get_by_text("signed in as vera (viewer, may read, not acknowledge)").wait_for(timeout=10_000)
    assert js(page, LIVE.format("ack") + ".disabled") is True
    event = show_alert(page, server)
    # A page can be changed in the browser: the server refuses on its own, whatever the button says.
    js(page, LIVE.format("ack") + ".disabled = false")
    page.wait_for_timeout(300)  # the change reaches the server
    acknowledge_first_row(page, "real_fault")
    page.get_by_text("Role viewer may read, not acknowledge.").wait_for(timeout=10_000)
    page.wait_for_timeout(500)
    assert published_acks(server, event.event_id) == []
    assert audit_rows(server) == []


def test_wrong_passwords_are_refused_then_locked_out_until_the_window_passes(start_server, page):
    server = start_server(dashboard_login_max_failures=3, dashboard_login_lockout_s=6)
    page.goto(server.url)
    assert submit_login(page, "otto", "guess") == 401
    page.get_by_text("Wrong user name or password.").wait_for()
    assert submit_login(page, "nobody", "guess") == 401  # an unknown name: the same answer
    page.get_by_text("Wrong user name or password.").wait_for()
    assert submit_login(page, "otto", "guess again") == 401
    started = datetime.now(UTC)
    # Three failures from this client: even the right password is refused now, without being checked.
    assert submit_login(page, "otto", PASSWORDS["otto"]) == 429
    page.get_by_text("Too many failed sign-ins: try again in").wait_for()
    assert "/login" in page.url
    assert submit_login(page, "vera", PASSWORDS["vera"]) == 429  # the client address is locked too
    assert "axiswatch_user" not in {c["name"] for c in page.context.cookies()}
    wait_for(lambda: (datetime.now(UTC) - started).total_seconds() > 6.5, timeout=10, what="the lockout to pass")
    assert submit_login(page, "otto", PASSWORDS["otto"]) == 302
    page.wait_for_function(f"() => window.Bokeh && Bokeh.documents.length > 0 && {LIVE.format('alert_table')}")


def test_an_expired_sign_in_goes_back_to_the_login_page_and_sign_out_ends_it(start_server, page):
    server = start_server(dashboard_sign_in_expiry_s=5)
    sign_in(page, server, "otto")
    page.wait_for_url("**/login**", timeout=15_000)  # the open tab is sent there when the sign-in expires
    page.goto(server.url)
    assert "/login" in page.url  # and a reload lands there too

    server_long = start_server()
    sign_in(page, server_long, "otto")
    page.get_by_role("link", name="sign out").click()
    page.wait_for_url("**/login**")
    page.goto(server_long.url)
    assert "/login" in page.url


def test_a_user_name_with_markup_is_shown_as_text(start_server, page):
    server = start_server()
    name = f"eve {EVIL}"
    page.goto(server.url)
    assert submit_login(page, name, "wrong") == 401  # the login page shows the name back in its form
    assert page.locator("#name").input_value() == name
    assert submit_login(page, name, PASSWORDS[name]) == 302
    page.wait_for_function(f"() => window.Bokeh && Bokeh.documents.length > 0 && {LIVE.format('alert_table')}")
    page.get_by_text(f"signed in as {name} (operator)").wait_for(timeout=10_000)
    show_alert(page, server)
    acknowledge_first_row(page, "inspected_ok", EVIL)
    page.get_by_text(f"acknowledged by {name} at").wait_for(timeout=20_000)
    page.locator(".slick-cell", has_text=f"{name} at").first.wait_for(timeout=20_000)
    page.wait_for_timeout(500)  # an image error handler runs as soon as the (broken) image fails to load
    assert page.evaluate("() => window.__pwned") is None
    assert page.dialogs == []
