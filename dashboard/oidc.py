"""OpenID Connect single sign-on for the dashboard: the authorization-code flow with PKCE, state and nonce,
against the provider's discovery document, done by Authlib (its requests client). Authlib checks the ID token:
the signature against the provider's JWKS, the issuer, the audience (our client id), the expiry and the nonce.
What is ours: the state check, the one signed short-lived cookie that carries state, nonce and PKCE verifier
from the redirect to the callback, and how the claims become a dashboard user (name, role).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import BaseApp, OAuth2Mixin, OpenIDMixin
from authlib.integrations.requests_client import OAuth2Session
from joserfc.errors import JoseError
from tornado.web import create_signed_value, decode_signed_value

from common.store.users import ROLES, User
from dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)

FLOW_COOKIE = "axiswatch_oidc"
FLOW_TTL_S = 600  # from "Sign in with" to the provider's answer: time to type a password there, no more
NAME_CHARS = 200  # api_users.name is 200 characters; the audit table takes the same names
ID_TOKEN_LEEWAY_S = 60  # clock skew allowed between the provider and this server


class SignInError(Exception):
    """Why a single sign-on failed, in words safe to show on the login page and to log (no token, no secret)."""


@dataclass(frozen=True)
class Flow:
    """What the callback must match: kept in a signed cookie of this browser between redirect and callback."""

    state: str
    nonce: str
    code_verifier: str
    next_url: str
    expires_at: float

    def cookie(self, secret: str) -> bytes:
        return create_signed_value(secret, FLOW_COOKIE, json.dumps(asdict(self)))

    @classmethod
    def from_cookie(cls, secret: str, value: str | None, now: float | None = None) -> Flow | None:
        raw = decode_signed_value(secret, FLOW_COOKIE, value, max_age_days=1) if value else None
        if raw is None:
            return None
        try:
            flow = cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None
        return flow if (time.time() if now is None else now) < flow.expires_at else None


class _AuthlibClient(OAuth2Mixin, OpenIDMixin, BaseApp):
    """Authlib's framework-neutral OpenID client (as its Flask and Django integrations build theirs)."""

    client_cls = OAuth2Session


def role_of(claims: dict, settings: DashboardSettings) -> str:
    """The highest role that the roles claim maps to; the default role when nothing maps."""
    value = claims.get(settings.dashboard_oidc_roles_claim)
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    role_map = settings.dashboard_oidc_role_map
    mapped = [role_map[v] for v in values if isinstance(v, str) and v in role_map]
    return max(mapped, key=ROLES.index) if mapped else settings.dashboard_oidc_default_role


def user_of(claims: dict, settings: DashboardSettings) -> User:
    name = claims.get("preferred_username") or claims.get("sub")
    if not isinstance(name, str) or not name or len(name) > NAME_CHARS:
        raise SignInError("the provider's answer names no usable user (preferred_username or sub)")
    return User(name, role_of(claims, settings))


class OidcProvider:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.issuer = settings.dashboard_oidc_issuer.rstrip("/")
        self.label = urlsplit(self.issuer).netloc or self.issuer
        self._client = _AuthlibClient(
            framework=None,
            client_id=settings.dashboard_oidc_client_id,
            client_secret=settings.dashboard_oidc_client_secret.get_secret_value() or None,
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.dashboard_oidc_scope,
                "code_challenge_method": "S256",
                "default_timeout": settings.dashboard_oidc_timeout_s,
            },
        )

    def _metadata(self) -> dict:
        metadata = self._client.load_server_metadata()
        # OpenID Connect Discovery: the document must name the issuer it was asked for (else a look-alike
        # document could send us to another provider's keys).
        if str(metadata.get("issuer", "")).rstrip("/") != self.issuer:
            self._client.server_metadata.clear()  # ask again next time
            raise SignInError("the provider's discovery document names another issuer")
        return metadata

    def start(self, redirect_uri: str, next_url: str, now: float | None = None) -> tuple[str, Flow]:
        """The provider's authorization URL to send the browser to, and what its answer must match."""
        with _explained("the provider could not be reached"):
            self._metadata()
            found = self._client.create_authorization_url(redirect_uri)
        flow = Flow(
            found["state"],
            found["nonce"],
            found["code_verifier"],
            next_url,
            (time.time() if now is None else now) + FLOW_TTL_S,
        )
        return found["url"], flow

    def finish(self, flow: Flow | None, state: str, code: str, redirect_uri: str) -> User:
        """The user the provider's answer stands for; SignInError when anything does not match."""
        if flow is None:
            raise SignInError("the sign-in took too long or was started in another browser; try again")
        if not hmac.compare_digest(flow.state.encode(), state.encode()):
            raise SignInError("the provider's answer does not belong to this sign-in (state mismatch)")
        with _explained("the provider did not give a valid token"):
            token = self._client.fetch_access_token(redirect_uri, code=code, code_verifier=flow.code_verifier)
        return self.identify(token, flow.nonce)

    def identify(self, token: dict, nonce: str) -> User:
        """Check the token response's ID token (signature, issuer, audience, expiry, nonce): its user."""
        if "id_token" not in token:
            raise SignInError("the provider's answer has no ID token")
        with _explained("the provider's ID token was refused"):
            # Authlib checks the audience only through azp unless told: OpenID Connect says aud must hold us.
            expected = {
                "iss": {"essential": True, "values": [self._metadata()["issuer"]]},
                "aud": {"essential": True, "values": [self.settings.dashboard_oidc_client_id]},
            }
            claims = self._client.parse_id_token(token, nonce=nonce, claims_options=expected, leeway=ID_TOKEN_LEEWAY_S)
        return user_of(dict(claims), self.settings)


class _explained:
    """Turns what the provider, the network or Authlib raise into a SignInError with a short, token-free reason
    (the exception's class and its error description, which names a claim or an OAuth error, never a token)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, SignInError):
            return False
        if isinstance(exc, (requests.RequestException, AuthlibBaseError, JoseError, ValueError, KeyError)):
            reason = str(getattr(exc, "description", None) or getattr(exc, "error", None) or "")[:200]
            raise SignInError(f"{self.what} ({type(exc).__name__}{': ' + reason if reason else ''})") from None
        return False
