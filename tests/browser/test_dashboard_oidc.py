"""Single sign-on in a real browser (Debian's Chromium through Playwright) against a real OpenID Connect
provider (oidc-provider-mock on a free port): the login page offers "Sign in with <provider>"; a user whose
groups claim maps to operator lands on the dashboard signed in as an operator and acknowledges under their
name (audit row included); a user without the claim is a viewer who cannot; a name carrying markup is shown as
text; a provider that is down, or an answer that does not belong to the sign-in, is a clear message on the
login page; the password form can be switched off."""

from __future__ import annotations

import socket

import pytest

from tests.browser.test_dashboard_signin import (  # noqa: F401 (start_server is a fixture)
    EVIL,
    LIVE,
    acknowledge_first_row,
    audit_rows,
    js,
    published_acks,
    show_alert,
    start_server,
)
from tests.dashboard_support import wait_for

oidc_provider_mock = pytest.importorskip("oidc_provider_mock", reason="oidc-provider-mock (the test extras)")

pytestmark = [pytest.mark.browser, pytest.mark.integration]
USERS = [
    oidc_provider_mock.User(sub="sub-olga", claims={"preferred_username": "olga", "groups": ["plant-operators"]}),
    oidc_provider_mock.User(sub="sub-viktor", claims={"preferred_username": "viktor"}),
    oidc_provider_mock.User(sub="sub-mallory", claims={"preferred_username": f"mallory {EVIL}"}),
]


@pytest.fixture(scope="module")
def issuer():
    with oidc_provider_mock.run_server_in_thread(user_claims=USERS) as provider:
        yield f"http://localhost:{provider.server_port}"


def sso(issuer: str, **kw) -> dict:
    return {
        "dashboard_oidc_issuer": issuer,
        "dashboard_oidc_client_id": "axiswatch-dashboard",
        "dashboard_oidc_client_secret": "the-client-secret",
        "dashboard_oidc_role_map": "plant-operators=operator,plant-admins=admin",
        **kw,
    }


def sign_in_with_provider(page, server, issuer: str, sub: str) -> None:
    """Open the dashboard, take "Sign in with" on the login page, pick ``sub`` on the provider's page."""
    page.goto(server.url)
    assert "/login" in page.url
    page.locator("#sign-in-oidc").click()
    page.wait_for_url(f"{issuer}/oauth2/authorize*")
    page.get_by_role("button", name=sub, exact=True).click()
    page.wait_for_function(
        f"() => window.Bokeh && Bokeh.documents.length > 0 && {LIVE.format('alert_table')}", timeout=30_000
    )
    page.errors.clear()  # the provider's page asks a CDN for its stylesheet (no network here): not ours


def test_an_operator_by_the_groups_claim_signs_in_and_acknowledges(start_server, issuer, page):
    server = start_server(**sso(issuer))
    page.goto(server.url)
    page.get_by_text(f"Sign in with {issuer.removeprefix('http://')}").wait_for()
    assert page.locator("#password").count() == 1  # the password form stays for local users
    sign_in_with_provider(page, server, issuer, "sub-olga")
    page.get_by_text("signed in as olga (operator)").wait_for(timeout=10_000)
    assert js(page, LIVE.format("ack") + ".disabled") is False
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["axiswatch_user"]["sameSite"] == "Strict" and cookies["axiswatch_user"]["httpOnly"]
    assert "axiswatch_oidc" not in cookies  # the flow's cookie is spent

    event = show_alert(page, server)
    acknowledge_first_row(page, "real_fault", "bearing noise")
    page.get_by_text("acknowledged by olga at").wait_for(timeout=10_000)
    [acked] = published_acks(server, event.event_id)
    assert (acked.acknowledged_by, acked.ack_outcome) == ("olga", "real_fault")
    [audit] = wait_for(lambda: audit_rows(server), what="the audit row")
    assert (audit["user_name"], audit["event_id"]) == ("olga", event.event_id)
    assert page.errors == []


def test_a_user_without_the_claim_is_a_viewer_who_cannot_acknowledge(start_server, issuer, page):
    server = start_server(**sso(issuer))
    sign_in_with_provider(page, server, issuer, "sub-viktor")
    page.get_by_text("signed in as viktor (viewer, may read, not acknowledge)").wait_for(timeout=10_000)
    assert js(page, LIVE.format("ack") + ".disabled") is True
    event = show_alert(page, server)
    js(page, LIVE.format("ack") + ".disabled = false")  # forced on in the browser: the server refuses anyway
    page.wait_for_timeout(300)
    acknowledge_first_row(page, "real_fault")
    page.get_by_text("Role viewer may read, not acknowledge.").wait_for(timeout=10_000)
    assert published_acks(server, event.event_id) == []
    assert audit_rows(server) == []


def test_a_name_with_markup_from_the_provider_is_shown_as_text(start_server, issuer, page):
    server = start_server(**sso(issuer))
    sign_in_with_provider(page, server, issuer, "sub-mallory")
    page.get_by_text(f"signed in as mallory {EVIL} (viewer").wait_for(timeout=10_000)
    assert js(page, "window.__pwned") is None and page.dialogs == []


def test_a_forged_answer_and_a_provider_that_is_down_are_told_on_the_login_page(start_server, issuer, page):
    server = start_server(**sso(issuer, dashboard_password_sign_in=False))
    page.goto(server.url)
    assert page.locator("#password").count() == 0  # single sign-on only
    # An answer nobody asked for (a login CSRF): no flow cookie in this browser, so it is refused.
    answer = page.goto(server.url.rstrip("/") + "/login?code=stolen-code&state=guessed")
    assert answer.status == 401
    page.get_by_text("Single sign-on failed: the sign-in took too long or was started in another browser").wait_for()
    assert "axiswatch_user" not in {c["name"] for c in page.context.cookies()}
    # Started here, but the answer's state is changed on the way: the provider's form is answered outside the
    # page (Playwright cannot hold back a redirect), and the browser, with this sign-in's flow cookie, brings
    # the provider's answer with another state.
    page.locator("#sign-in-oidc").click()
    page.wait_for_url(f"{issuer}/oauth2/authorize*")
    answer = page.request.post(page.url, form={"sub": "sub-olga"}, max_redirects=0)
    assert answer.status == 302 and "state=" in answer.headers["location"]
    assert page.goto(answer.headers["location"].replace("state=", "state=x")).status == 401
    page.get_by_text("state mismatch").wait_for()
    assert "axiswatch_user" not in {c["name"] for c in page.context.cookies()}
    # The provider is down: the page says so instead of failing.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = start_server(**sso(f"http://127.0.0.1:{port}", dashboard_oidc_timeout_s=2))
    page.goto(down.url)
    page.locator("#sign-in-oidc").click()
    page.get_by_text("Single sign-on is unavailable: the provider could not be reached").wait_for()
    assert "axiswatch_user" not in {c["name"] for c in page.context.cookies()}
