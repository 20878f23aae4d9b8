"""Single sign-on against a real OpenID Connect provider (oidc-provider-mock, a Flask server on a free localhost
port in this process): the code flow gives the user and the role the claims say; a tampered state, a token for
another client (audience), another nonce, a forged signature, a stale or forged flow cookie and a provider that
is down are refused with a reason that carries no token. The browser drives the whole of it in
tests/browser/test_dashboard_oidc.py."""

from __future__ import annotations

import base64
import json
import socket
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pydantic import ValidationError

from common.store.users import User
from dashboard.oidc import Flow, OidcProvider, SignInError, role_of
from dashboard.settings import DashboardSettings

oidc_provider_mock = pytest.importorskip("oidc_provider_mock", reason="oidc-provider-mock (the test extras)")

CALLBACK = "http://127.0.0.1:5006/login"
SECRET = "flow-cookie-secret-0123456789"
USERS = [
    oidc_provider_mock.User(sub="u-1", claims={"preferred_username": "olga", "groups": ["plant-operators"]}),
    oidc_provider_mock.User(sub="u-2", claims={"preferred_username": "viktor"}),
    oidc_provider_mock.User(sub="u-3", claims={"groups": ["plant-operators", "plant-admins"]}),
]


@pytest.fixture(scope="module")
def issuer():
    with oidc_provider_mock.run_server_in_thread(user_claims=USERS) as server:
        yield f"http://localhost:{server.server_port}"


def settings(issuer: str, client_id: str = "axiswatch-dashboard", **kw) -> DashboardSettings:
    return DashboardSettings(
        _env_file=None,
        dashboard_oidc_issuer=issuer,
        dashboard_oidc_client_id=client_id,
        dashboard_oidc_client_secret="client-secret",
        **{"dashboard_oidc_role_map": "plant-operators=operator,plant-admins=admin", **kw},
    )


def authorize(provider: OidcProvider, sub: str) -> tuple[Flow, str, str]:
    """Start a sign-in and answer the provider's page as ``sub`` would: the flow and the callback's state, code."""
    url, flow = provider.start(CALLBACK, "/?tab=fleet")
    answer = requests.post(url, data={"sub": sub}, allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and answer.headers["location"].startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    return flow, query["state"][0], query["code"][0]


def token_for(provider: OidcProvider, sub: str) -> tuple[dict, str]:
    """A token response (with its ID token) that ``provider``'s client obtained for ``sub``, and its nonce."""
    flow, _, code = authorize(provider, sub)
    token = provider._client.fetch_access_token(CALLBACK, code=code, code_verifier=flow.code_verifier)
    return token, flow.nonce


def test_the_code_flow_gives_the_user_and_the_role_the_claims_map_to(issuer):
    provider = OidcProvider(settings(issuer))
    url, flow = provider.start(CALLBACK, "/")
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"] == [flow.state]
    assert query["nonce"] == [flow.nonce] and query["client_id"] == ["axiswatch-dashboard"]

    assert provider.finish(*authorize(provider, "u-1"), CALLBACK) == User("olga", "operator")
    assert provider.finish(*authorize(provider, "u-2"), CALLBACK) == User("viktor", "viewer")  # no claim: default
    assert provider.finish(*authorize(provider, "u-3"), CALLBACK) == User("u-3", "admin")  # no name: sub; highest


def test_a_tampered_state_is_refused_before_the_code_is_used(issuer):
    provider = OidcProvider(settings(issuer))
    flow, state, code = authorize(provider, "u-1")
    with pytest.raises(SignInError, match="state mismatch"):
        provider.finish(flow, state[:-1] + ("x" if state[-1] != "x" else "y"), code, CALLBACK)
    with pytest.raises(SignInError, match="another browser"):
        provider.finish(None, state, code, CALLBACK)  # no flow cookie came with the answer
    assert provider.finish(flow, state, code, CALLBACK).name == "olga"  # the code was not spent on them


def test_an_id_token_for_another_client_is_refused(issuer):
    ours = OidcProvider(settings(issuer))
    token, nonce = token_for(OidcProvider(settings(issuer, client_id="someone-else")), "u-1")
    with pytest.raises(SignInError, match="ID token was refused") as refused:
        ours.identify(token, nonce)
    assert "aud" in str(refused.value) and token["id_token"] not in str(refused.value)
    assert OidcProvider(settings(issuer, client_id="someone-else")).identify(token, nonce).name == "olga"


def test_an_id_token_with_another_nonce_or_a_forged_signature_is_refused(issuer):
    provider = OidcProvider(settings(issuer))
    token, nonce = token_for(provider, "u-2")
    with pytest.raises(SignInError, match="nonce"):
        provider.identify(token, "another-nonce")
    header, payload, signature = token["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = ["plant-admins"]  # a viewer making themself admin
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(SignInError, match="ID token was refused"):
        provider.identify({**token, "id_token": f"{header}.{forged}.{signature}"}, nonce)
    with pytest.raises(SignInError, match="no ID token"):
        provider.identify({k: v for k, v in token.items() if k != "id_token"}, nonce)
    assert provider.identify(token, nonce) == User("viktor", "viewer")


def test_a_provider_that_is_down_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SignInError, match="could not be reached \\(ConnectionError\\)"):
        OidcProvider(settings(f"http://127.0.0.1:{port}", dashboard_oidc_timeout_s=2)).start(CALLBACK, "/")


def test_the_flow_cookie_is_signed_and_short_lived():
    flow = Flow("state", "nonce", "verifier", "/", expires_at=1600.0)
    value = flow.cookie(SECRET)
    assert Flow.from_cookie(SECRET, value.decode(), now=1599.0) == flow
    assert Flow.from_cookie(SECRET, value.decode(), now=1600.0) is None  # expired
    assert Flow.from_cookie("another-secret-0123456789", value.decode(), now=1599.0) is None
    version, key, stamp, name, payload, signature = value.decode().split("|")
    size, data = payload.split(":")
    changed = json.dumps({**json.loads(base64.b64decode(data)), "next_url": "//evil.example"}).encode()
    forged = f"{len(base64.b64encode(changed))}:{base64.b64encode(changed).decode()}"
    assert Flow.from_cookie(SECRET, "|".join([version, key, stamp, name, forged, signature]), now=1599.0) is None
    assert Flow.from_cookie(SECRET, None) is None


def test_the_role_is_the_highest_mapped_one_or_the_default(issuer):
    s = settings(issuer, dashboard_oidc_roles_claim="roles", dashboard_oidc_default_role="viewer")
    assert role_of({"roles": ["plant-admins", "plant-operators"]}, s) == "admin"
    assert role_of({"roles": "plant-operators"}, s) == "operator"  # one string
    assert role_of({"roles": ["unknown"], "groups": ["plant-admins"]}, s) == "viewer"  # only the named claim
    assert role_of({"roles": {"plant-admins": True}}, s) == "viewer"  # neither list nor string: nothing maps


def test_settings_refuse_what_cannot_work():
    with pytest.raises(ValidationError, match="https URL"):
        settings("http://idp.example.com")
    with pytest.raises(ValidationError, match="CLIENT_ID"):
        settings("https://idp.example.com", client_id="")
    with pytest.raises(ValidationError, match="must include openid"):
        settings("https://idp.example.com", dashboard_oidc_scope="profile")
    with pytest.raises(ValidationError, match="value=role"):
        settings("https://idp.example.com", dashboard_oidc_role_map="plant-operators")
    with pytest.raises(ValidationError, match="needs DASHBOARD_OIDC_ISSUER"):
        DashboardSettings(_env_file=None, dashboard_password_sign_in=False)
    assert settings("https://idp.example.com").dashboard_oidc_client_secret.get_secret_value() == "client-secret"
    assert "client-secret" not in repr(settings("https://idp.example.com"))


def test_a_discovery_document_for_another_issuer_is_refused(issuer):
    provider = OidcProvider(settings(issuer))
    provider._client.server_metadata.update(issuer="https://look-alike.example", _loaded_at=0.0)  # as if fetched
    with pytest.raises(SignInError, match="names another issuer"):
        provider.start(CALLBACK, "/")
    assert provider.start(CALLBACK, "/")[0].startswith(f"{issuer}/oauth2/authorize?")  # asked again: the real one


async def test_the_login_page_tells_a_refusal_and_can_refuse_passwords(issuer, tmp_path):
    from urllib.parse import urlencode

    from sqlalchemy import create_engine
    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets
    from tornado.web import Application

    from dashboard.auth import PasswordSignIn

    engine = create_engine(f"sqlite:///{tmp_path / 'unused.sqlite'}")
    sign_in = PasswordSignIn(settings(issuer, dashboard_password_sign_in=False), engine)
    [sock] = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(Application([("/login", sign_in.login_handler)]))
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/login"
    client = AsyncHTTPClient()
    try:
        page = await client.fetch(url)
        assert b'id="sign-in-oidc"' in page.body and b'id="password"' not in page.body
        xsrf = "0123abcd"  # no form, no XSRF cookie from the page: tornado takes any hex token matching its cookie
        form = urlencode({"_xsrf": xsrf, "name": "otto", "password": "pw"})
        cookie = {"Cookie": f"_xsrf={xsrf}"}
        posted = await client.fetch(url, method="POST", body=form, headers=cookie, raise_error=False)
        assert posted.code == 403 and b"use single sign-on" in posted.body
        denied = await client.fetch(f"{url}?error=access_denied&state=s", raise_error=False)  # the user said no
        assert denied.code == 401 and b"the provider refused (access_denied)" in denied.body
        assert "axiswatch_user" not in denied.headers.get("Set-Cookie", "")
    finally:
        server.stop()
        engine.dispose()
