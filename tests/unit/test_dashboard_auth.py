"""The dashboard's sign-in pieces without a browser: the cookie (signed, expiring, bound to its key), the
lockout per user name and per client address, where a sign-in may send the browser, and the start-up rule that
sign-in needs a database (tests/browser/test_dashboard_signin.py drives the whole of it in Chromium)."""

from __future__ import annotations

import base64
import json

import pytest
from tornado.web import create_signed_value

from common.errors import ConfigurationError
from common.store.users import User
from dashboard.auth import COOKIE, FailedSignIns, auth_provider, cookie_value, safe_next, signed_in
from dashboard.cli import main
from dashboard.settings import DashboardSettings

OTTO = User("otto", "operator")


def settings(**kw) -> DashboardSettings:
    return DashboardSettings(_env_file=None, **{"dashboard_sign_in_expiry_s": 60, **kw})


def test_a_cookie_stands_for_its_user_until_it_expires():
    s = settings()
    value = cookie_value(s, OTTO, now=1000.0)
    assert signed_in(s, value, now=1059.0).user == OTTO
    assert signed_in(s, value, now=1060.0) is None  # expired
    assert signed_in(s, value.decode(), now=1001.0).user == OTTO  # as a browser sends it back


def test_a_cookie_signed_with_another_key_or_changed_is_refused():
    s = settings()
    value = cookie_value(s, OTTO, now=1000.0)
    assert signed_in(settings(), value, now=1001.0) is None  # another start without a shared secret
    fields = value.split(b"|")  # tornado's format: version|key version|time|name|payload|signature
    admin = base64.b64encode(json.dumps({"name": "otto", "role": "admin", "exp": 2000.0}).encode())
    forged = b"|".join([*fields[:4], b"%d:%s" % (len(admin), admin), fields[5]])
    assert forged != value
    assert signed_in(s, forged, now=1001.0) is None
    unsigned_admin = create_signed_value("guess", COOKIE, '{"name": "otto", "role": "admin", "exp": 9e9}')
    assert signed_in(s, unsigned_admin, now=1001.0) is None
    assert signed_in(s, None) is None and signed_in(s, "garbage") is None


def test_an_empty_cookie_secret_is_a_random_one_and_a_short_one_is_refused():
    assert len(settings(dashboard_cookie_secret="").dashboard_cookie_secret.get_secret_value()) >= 32
    with pytest.raises(ValueError, match="at least 16"):
        settings(dashboard_cookie_secret="short")
    assert settings(dashboard_cookie_secret="k" * 16).dashboard_cookie_secret.get_secret_value() == "k" * 16


def test_failures_lock_a_name_from_any_client_and_a_client_for_any_name_until_they_age():
    failures = FailedSignIns(max_failures=3, lockout_s=10)
    for i, client in enumerate(["a", "b", "c"]):
        failures.failed(["name:otto", f"client:{client}"], now=100.0 + i)
    assert failures.locked_for(["name:otto", "client:d"], now=103.0) == pytest.approx(7.0)  # the name
    assert failures.locked_for(["name:vera", "client:a"], now=103.0) == 0  # one failure from a: not locked
    for name in ["x", "y", "z"]:
        failures.failed([f"name:{name}", "client:e"], now=103.0)
    assert failures.locked_for(["name:vera", "client:e"], now=104.0) == pytest.approx(9.0)  # the client
    assert failures.locked_for(["name:otto", "client:d"], now=110.0) == 0  # the oldest failure aged out
    failures.succeeded("client:e")
    assert failures.locked_for(["name:vera", "client:e"], now=104.0) == 0


def test_after_sign_in_the_browser_goes_to_a_path_of_this_server_only():
    assert safe_next("/?robot=x") == "/?robot=x"
    for elsewhere in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "evil",
        None,
        "",
        "/\t/evil.example",
        "/\r\nSet-Cookie: x=1",
    ]:
        assert safe_next(elsewhere) == "/"


def test_sign_in_needs_the_database_unless_turned_off(capsys):
    with pytest.raises(ConfigurationError, match="DASHBOARD_SIGN_IN=false"):
        auth_provider(settings(), engine=None)
    assert auth_provider(settings(dashboard_sign_in=False), engine=None).get_user is None
    assert main(["--no-database"]) == 2
    assert "sign-in needs the database" in capsys.readouterr().err


async def test_a_database_that_does_not_answer_is_said_and_not_counted_as_a_failure(tmp_path):
    from http.cookies import SimpleCookie
    from urllib.parse import urlencode

    from sqlalchemy import create_engine
    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets
    from tornado.web import Application

    from dashboard.auth import PasswordSignIn

    engine = create_engine(f"sqlite:///{tmp_path / 'absent' / 'no.sqlite'}")  # cannot be opened
    provider = PasswordSignIn(settings(dashboard_login_max_failures=1), engine)
    [sock] = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(Application([("/login", provider.login_handler)]))
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/login"
    client = AsyncHTTPClient()
    try:
        page = await client.fetch(url)
        xsrf = SimpleCookie(page.headers["Set-Cookie"])["_xsrf"].value
        form = urlencode({"_xsrf": xsrf, "name": "otto", "password": "pw"})
        for _ in range(2):  # the limit is 1 failure: a second 503, not a 429, means none was counted
            answer = await client.fetch(
                url, method="POST", body=form, headers={"Cookie": f"_xsrf={xsrf}"}, raise_error=False
            )
            assert answer.code == 503 and b"database does not answer" in answer.body
        forged = await client.fetch(url, method="POST", body=form, raise_error=False)  # no XSRF cookie
        assert forged.code == 403
    finally:
        server.stop()
        engine.dispose()
