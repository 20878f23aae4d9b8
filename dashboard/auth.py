"""Sign-in for the dashboard through Bokeh's auth hooks (``auth_provider``): a login page checked against the
users in PostgreSQL (``common.store.users``), a signed cookie that expires, a logout, and a lockout after a few
wrong passwords per user name and per client address; with DASHBOARD_OIDC_ISSUER also single sign-on
(``dashboard.oidc``) on the same login page, ending in the same cookie.

Bokeh asks ``get_user`` before it serves the page, a session or its websocket; without a valid cookie it
redirects to ``/login``. The page's document learns its user from the same cookie, which Bokeh hands to the
session (``page_user``): the signature and the expiry are checked there again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from bokeh.server.auth_provider import AuthProvider, NullAuth
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from tornado.escape import xhtml_escape
from tornado.web import RequestHandler, create_signed_value, decode_signed_value

from common.errors import ConfigurationError
from common.store.users import User, authenticate
from dashboard.oidc import FLOW_COOKIE, FLOW_TTL_S, Flow, OidcProvider, SignInError
from dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)

COOKIE = "axiswatch_user"
LOGIN_URL, LOGOUT_URL = "/login", "/logout"
NAME_CHARS, PASSWORD_CHARS = 200, 1024  # api_users.name is 200 characters
NEEDS_DATABASE = (
    "the dashboard's sign-in needs the database (DATABASE_URL); DASHBOARD_SIGN_IN=false turns it off for local "
    "demos only"
)
ANONYMOUS = User("anonymous", "operator")  # every visitor when DASHBOARD_SIGN_IN=false (local demos only)


@dataclass(frozen=True)
class SignedIn:
    user: User
    expires_at: float  # time.time()

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


def cookie_value(settings: DashboardSettings, user: User, now: float) -> bytes:
    payload = json.dumps({"name": user.name, "role": user.role, "exp": now + settings.dashboard_sign_in_expiry_s})
    return create_signed_value(settings.dashboard_cookie_secret.get_secret_value(), COOKIE, payload)


def signed_in(settings: DashboardSettings, value: str | bytes | None, now: float | None = None) -> SignedIn | None:
    """Who a cookie stands for, or None: absent, forged, malformed or expired."""
    if not value:
        return None
    days = math.ceil(settings.dashboard_sign_in_expiry_s / 86400) + 1  # tornado's own bound; ``exp`` is the real one
    raw = decode_signed_value(settings.dashboard_cookie_secret.get_secret_value(), COOKIE, value, max_age_days=days)
    if raw is None:
        return None
    try:
        payload = json.loads(raw)
        found = SignedIn(User(str(payload["name"]), str(payload["role"])), float(payload["exp"]))
    except (ValueError, KeyError, TypeError):
        return None
    return None if found.expired(now) else found


def page_user(doc, settings: DashboardSettings) -> SignedIn | None:
    """The user of a page's session (from the cookie its page load carried); None when there is none."""
    if not settings.dashboard_sign_in:
        return SignedIn(ANONYMOUS, math.inf)
    context = doc.session_context
    cookies = getattr(getattr(context, "request", None), "cookies", None) or {}
    return signed_in(settings, cookies.get(COOKIE))


class FailedSignIns:
    """Failed sign-ins per key (a user name, a client address) over the last ``lockout_s``: at ``max_failures``
    the key is locked until the oldest of them is ``lockout_s`` old. In memory: each replica counts its own."""

    def __init__(self, max_failures: int, lockout_s: float) -> None:
        self.max_failures, self.lockout_s = max_failures, lockout_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.lockout_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def locked_for(self, keys: list[str], now: float) -> float:
        """Seconds until every key may try again (0 = may try now)."""
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.max_failures:
                wait = max(wait, times[-self.max_failures] + self.lockout_s - now)
        return wait

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            self._recent(key, now)  # drops what has aged, so the table holds only recent failures
            self._failures[key].append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>axiswatch — sign in</title>
<style>body{{font-family:sans-serif;margin:4em auto;max-width:22em}} label,input,button{{display:block;width:100%;
margin:.3em 0}} .error{{color:#b00020}} .sso{{display:block;margin:1em 0}}</style></head>
<body><h1>axiswatch</h1><p>Sign in to the dashboard.</p>
<p class="error" id="error">{error}</p>{sso}{form}</body></html>
"""
PASSWORD_FORM = """<form method="post" action="{action}">{xsrf}
<label>user name <input name="name" id="name" value="{name}" autocomplete="username" required></label>
<label>password <input name="password" id="password" type="password" autocomplete="current-password" required>
</label><button type="submit" id="sign-in">Sign in</button></form>"""
SSO_LINK = '<a class="sso" id="sign-in-oidc" href="{href}">Sign in with {label}</a>'
# After single sign-on the browser arrives from the provider's site: a SameSite=Strict cookie set then is not
# sent on a redirect of that same navigation, so this page moves on with a navigation of our own.
SIGNED_IN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={target}">
<title>axiswatch — signed in</title></head><body><a href="{target}">Continue to the dashboard</a></body></html>
"""


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (never another site), of printable characters
    only: tornado refuses a Location header holding CR, LF or DEL, so such a link answered every sign-in with a
    500, and browsers drop a tab from a URL (``/<tab>/evil.example`` would be ``//evil.example``)."""
    if (
        not target
        or not target.isprintable()
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
    ):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


class LoginHandler(RequestHandler):
    settings_: DashboardSettings
    engine: Engine
    failures: FailedSignIns
    oidc: OidcProvider | None

    async def get(self) -> None:
        if self.oidc is not None and self.get_argument("sso", None) is not None:
            return await self._start_sso()
        if self.oidc is not None and (self.get_argument("state", None) or self.get_argument("error", None)):
            return await self._finish_sso()
        self._page()

    def _page(self, error: str = "", name: str = "") -> None:
        target = safe_next(self.get_argument("next", None))
        form = ""
        if self.settings_.dashboard_password_sign_in:
            action = f"{LOGIN_URL}?{urlencode({'next': target})}"
            form = PASSWORD_FORM.format(
                action=xhtml_escape(action), xsrf=self.xsrf_form_html(), name=xhtml_escape(name)
            )
        sso = ""
        if self.oidc is not None:
            href = f"{LOGIN_URL}?{urlencode({'sso': '1', 'next': target})}"
            sso = SSO_LINK.format(href=xhtml_escape(href), label=xhtml_escape(self.oidc.label))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(PAGE.format(error=xhtml_escape(error), sso=sso, form=form))

    def _redirect_uri(self) -> str:
        return self.settings_.dashboard_oidc_redirect_url or f"{self.request.protocol}://{self.request.host}{LOGIN_URL}"

    async def _start_sso(self) -> None:
        assert self.oidc is not None
        try:
            url, flow = await asyncio.to_thread(
                self.oidc.start, self._redirect_uri(), safe_next(self.get_argument("next", None))
            )
        except SignInError as exc:
            logger.warning("single sign-on could not start: %r", str(exc))
            self.set_status(503)
            return self._page(f"Single sign-on is unavailable: {exc}.")
        secret = self.settings_.dashboard_cookie_secret.get_secret_value()
        # Lax, not Strict: the provider's redirect back to us is a navigation from its site, which must carry it.
        self.set_cookie(
            FLOW_COOKIE,
            flow.cookie(secret),
            httponly=True,
            samesite="Lax",
            secure=self.settings_.dashboard_cookie_secure,
            path=LOGIN_URL,
            expires_days=FLOW_TTL_S / 86400,
        )
        self.redirect(url)

    async def _finish_sso(self) -> None:
        assert self.oidc is not None
        secret = self.settings_.dashboard_cookie_secret.get_secret_value()
        flow = Flow.from_cookie(secret, self.get_cookie(FLOW_COOKIE))
        self.clear_cookie(FLOW_COOKIE, path=LOGIN_URL)  # one answer per sign-in, whatever it brings
        client = self.request.remote_ip or "unknown"
        try:
            if self.get_argument("error", None):  # the user said no, or the provider refused: its code only
                raise SignInError(f"the provider refused ({self.get_argument('error')[:100]})")
            user = await asyncio.to_thread(
                self.oidc.finish,
                flow,
                self.get_argument("state", ""),
                self.get_argument("code", ""),
                self._redirect_uri(),
            )
        except SignInError as exc:
            logger.warning("single sign-on failed from %s: %r", client, str(exc))
            self.set_status(401)
            return self._page(f"Single sign-on failed: {exc}.")
        self._set_signed_in(user)
        logger.info("signed in by single sign-on: %r (%s) from %s", user.name, user.role, client)
        target = xhtml_escape(flow.next_url if flow else "/")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(SIGNED_IN_PAGE.format(target=target))

    def _set_signed_in(self, user: User) -> None:
        self.set_cookie(
            COOKIE,
            cookie_value(self.settings_, user, time.time()),
            httponly=True,
            samesite="Strict",
            secure=self.settings_.dashboard_cookie_secure,
        )

    async def post(self) -> None:
        self.check_xsrf_cookie()  # a page of another site cannot sign a browser in
        if not self.settings_.dashboard_password_sign_in:
            self.set_status(403)
            return self._page("Sign-in with a password is turned off here; use single sign-on.")
        name, password = self.get_body_argument("name", ""), self.get_body_argument("password", "")
        client, now = self.request.remote_ip or "unknown", time.time()
        keys = [f"name:{name}", f"client:{client}"]
        wait = self.failures.locked_for(keys, now)
        if wait > 0:
            logger.warning("sign-in refused, locked out: %r from %s", name, client)
            self.set_status(429)
            self.set_header("Retry-After", str(math.ceil(wait)))
            return self._page(f"Too many failed sign-ins: try again in {math.ceil(wait)} s.", name)
        try:
            user = await asyncio.to_thread(self._authenticate, name, password)
        except SQLAlchemyError as exc:  # the database is away: say so, count nothing against the user
            logger.warning("sign-in: the database could not be asked: %r", f"{type(exc).__name__}: {exc}"[:300])
            self.set_status(503)
            return self._page("Sign-in is unavailable (the database does not answer); try again shortly.", name)
        if user is None:
            self.failures.failed(keys, now)
            logger.warning("sign-in failed: %r from %s", name, client)
            self.set_status(401)
            return self._page("Wrong user name or password.", name)
        self.failures.succeeded(keys[0])
        self.failures.succeeded(keys[1])
        self._set_signed_in(user)
        logger.info("signed in: %r (%s) from %s", user.name, user.role, client)
        self.redirect(safe_next(self.get_argument("next", None)))

    def _authenticate(self, name: str, password: str) -> User | None:
        if len(name) > NAME_CHARS or len(password) > PASSWORD_CHARS:  # no user has such; not worth hashing
            return None
        with self.engine.connect() as conn:
            return authenticate(conn, name, password)


class LogoutHandler(RequestHandler):
    def get(self) -> None:
        self.clear_cookie(COOKIE)
        self.redirect(LOGIN_URL)


class PasswordSignIn(AuthProvider):
    """Bokeh's auth hooks: ``get_user`` from the signed cookie, the login and logout pages."""

    def __init__(self, settings: DashboardSettings, engine: Engine) -> None:
        self.settings = settings
        failures = FailedSignIns(settings.dashboard_login_max_failures, settings.dashboard_login_lockout_s)
        oidc = OidcProvider(settings) if settings.dashboard_oidc_issuer else None
        # Bokeh registers handler classes without arguments: this server's settings go in as class attributes.
        self._login = type(
            "LoginHandler",
            (LoginHandler,),
            {"settings_": settings, "engine": engine, "failures": failures, "oidc": oidc},
        )
        super().__init__()

    @property
    def get_user(self):
        return lambda handler: (found := signed_in(self.settings, handler.get_cookie(COOKIE))) and found.user.name

    @property
    def login_url(self) -> str:
        return LOGIN_URL

    @property
    def login_handler(self):
        return self._login

    @property
    def logout_url(self) -> str:
        return LOGOUT_URL

    @property
    def logout_handler(self):
        return LogoutHandler


def auth_provider(settings: DashboardSettings, engine: Engine | None) -> AuthProvider:
    """Sign-in as the settings say; the users are in the database, so sign-in without one cannot start."""
    if not settings.dashboard_sign_in:
        logger.warning("dashboard: sign-in is OFF (DASHBOARD_SIGN_IN=false): anyone who reaches it may acknowledge")
        return NullAuth()
    if engine is None:
        raise ConfigurationError(NEEDS_DATABASE)
    return PasswordSignIn(settings, engine)
