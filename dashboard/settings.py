"""Settings of the dashboard, on top of the shared ones (environment names are the field names in upper case)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from common.defaults import LONGEST_POLL_MS, STOPPAGE_RESET_S
from common.settings import CommonSettings


class DashboardSettings(CommonSettings):
    dashboard_port: int = Field(5006, ge=0, le=65535, description="HTTP port of the Bokeh server.")
    dashboard_address: str = Field(
        "127.0.0.1", description="Address to listen on; 0.0.0.0 to serve other machines (docker does)."
    )
    dashboard_allow_websocket_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of host[:port] the page may be opened from; empty = localhost and 127.0.0.1 "
        "on the dashboard's port.",
    )
    dashboard_group_id: str = Field(
        "axiswatch-dashboard",
        description="Consumer group prefix; each server process adds its own suffix so every replica sees "
        "every partition (the dashboard never commits).",
    )
    window_rows: int = Field(
        200,
        ge=10,
        # Each robot's window is one array of this many rows (43 floats each with 14 axes): 10^8 or 10^12 passed,
        # and every reading was then skipped (MemoryError) with the page up and empty. 100,000 is 34 MB a robot.
        le=100_000,
        description="Readings per axis in the live window (at most 100,000).",
    )
    x_axis_ticks: Literal["fixed", "auto"] = Field(
        "fixed", description="fixed: ticks at whole multiples of one interval, steady while the window scrolls."
    )
    stacked: bool = Field(False, description="Stacked areas instead of lines.")
    dashboard_stale_seconds: float = Field(
        15.0, gt=0, description="No new reading for this long: the page says disconnected and greys the chart."
    )
    dashboard_push_ms: int = Field(
        250,
        ge=20,
        le=LONGEST_POLL_MS,
        description="Longest wait before new readings go to the pages (at most 10,000).",
    )
    dashboard_alert_rows: int = Field(200, ge=1, description="Alert events kept for the live table and chart.")
    dashboard_session_expiry_ms: int = Field(
        15000, gt=0, description="How long a closed tab's session is kept before its memory is freed."
    )
    dashboard_sessions_per_client: int = Field(
        20,
        ge=0,
        description="Open sessions (tabs, page loads not yet expired) one client address may hold; more page "
        "loads are answered 429 until some expire. 0 = no limit.",
    )
    dashboard_sign_in: bool = Field(
        True,
        description="Require sign-in (users of common.store.users, added with python -m api add-user). false: "
        "every visitor is the operator 'anonymous', for local demos only (UNSAFE on a network).",
    )
    dashboard_cookie_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="Key that signs the sign-in cookie (16+ characters); unset = a random one per start "
        "(every sign-in ends with a restart, replicas need one shared key).",
    )
    dashboard_sign_in_expiry_s: float = Field(
        8 * 3600.0, gt=0, description="A sign-in lasts this long; then the page sends the user to the login page."
    )
    dashboard_cookie_secure: bool = Field(
        False, description="Send the sign-in cookie over HTTPS only (true behind a TLS proxy)."
    )
    dashboard_login_max_failures: int = Field(
        5, ge=1, description="Failed sign-ins per user name, and per client address, before a lockout."
    )
    dashboard_login_lockout_s: float = Field(
        300.0, gt=0, description="Failures count for this long; at the limit, sign-in is refused until they age."
    )
    dashboard_password_sign_in: bool = Field(
        True, description="Offer the user name and password form (false: single sign-on only, needs the issuer)."
    )
    dashboard_oidc_issuer: str = Field(
        "",
        description="OpenID Connect issuer URL (https; http only for localhost) for single sign-on; empty = off. "
        "Its discovery document is read from <issuer>/.well-known/openid-configuration.",
    )
    dashboard_oidc_client_id: str = Field("", description="This dashboard's client id at the provider.")
    dashboard_oidc_client_secret: SecretStr = Field(
        SecretStr(""), description="This dashboard's client secret at the provider (empty = a public client)."
    )
    dashboard_oidc_scope: str = Field(
        "openid profile", description="Scopes asked for (space separated; must include openid)."
    )
    dashboard_oidc_roles_claim: str = Field(
        "groups", description="ID token claim that carries the user's groups or roles (a list or one string)."
    )
    dashboard_oidc_role_map: Annotated[dict[str, Literal["viewer", "operator", "admin"]], NoDecode] = Field(
        default_factory=dict,
        description="Comma list value=role mapping the roles claim to dashboard roles, e.g. "
        "plant-operators=operator,plant-admins=admin; the highest match wins.",
    )
    dashboard_oidc_default_role: Literal["viewer", "operator", "admin"] = Field(
        "viewer", description="Role of a single sign-on user whose roles claim maps to nothing."
    )
    dashboard_oidc_redirect_url: str = Field(
        "",
        description="The callback URL registered at the provider (<dashboard>/login); empty = /login on the "
        "address the browser used (set it behind a reverse proxy).",
    )
    dashboard_oidc_timeout_s: float = Field(10.0, gt=0, description="Timeout of each request to the provider.")
    dashboard_fleet_refresh_s: float = Field(
        60.0, ge=1, description="How often an open Fleet tab asks the database again (health changes hourly)."
    )
    # consumer_alerts' setting of the same name, read here too: one value in the environment, and the live
    # view follows a robot's clock back from ahead when the detectors do (common.wire.clock)
    stoppage_reset_s: float = Field(
        STOPPAGE_RESET_S,
        gt=0,
        description="How far behind its readings from ahead a robot's clock must come back for the live view "
        "to follow it back (consumer_alerts' stoppage, the same variable).",
    )

    @field_validator("dashboard_cookie_secret", mode="before")
    @classmethod
    def _secret(cls, value: object) -> object:
        # Empty (docker compose passes an unset variable as "") = unset; a short key could be guessed.
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")
        if not text:
            return SecretStr(secrets.token_urlsafe(32))
        if len(text) < 16:
            raise ValueError("DASHBOARD_COOKIE_SECRET must be at least 16 characters")
        return value

    @field_validator("dashboard_oidc_role_map", mode="before")
    @classmethod
    def _role_map(cls, value: object) -> object:
        if isinstance(value, dict):
            return value
        pairs = [part.strip() for part in str(value or "").split(",") if part.strip()]
        if any("=" not in pair for pair in pairs):
            raise ValueError("DASHBOARD_OIDC_ROLE_MAP is a comma list of value=role")
        return {k.strip(): v.strip() for k, v in (pair.rsplit("=", 1) for pair in pairs)}

    @model_validator(mode="after")
    def _sign_in_methods(self) -> DashboardSettings:
        issuer = urlsplit(self.dashboard_oidc_issuer)
        if self.dashboard_oidc_issuer:
            local = issuer.hostname in {"localhost", "127.0.0.1", "::1"}
            if not (issuer.scheme == "https" or (issuer.scheme == "http" and local)) or not issuer.hostname:
                raise ValueError("DASHBOARD_OIDC_ISSUER must be an https URL (http only for localhost)")
            if not self.dashboard_oidc_client_id:
                raise ValueError("DASHBOARD_OIDC_ISSUER needs DASHBOARD_OIDC_CLIENT_ID")
            if "openid" not in self.dashboard_oidc_scope.split():
                raise ValueError("DASHBOARD_OIDC_SCOPE must include openid")
        if self.dashboard_sign_in and not self.dashboard_password_sign_in and not self.dashboard_oidc_issuer:
            raise ValueError("DASHBOARD_PASSWORD_SIGN_IN=false needs DASHBOARD_OIDC_ISSUER (no way to sign in)")
        return self

    @field_validator("dashboard_allow_websocket_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> list[str]:
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        return [part.strip() for part in str(value).split(",") if part.strip()]

    def latest_plausible(self, now: datetime | None = None) -> datetime:
        """The newest reading time the dashboard believes: the server's clock plus READING_MAX_FUTURE_S (the
        reading policy's own bound, so what the services store is what the History tab can show)."""
        return (now or datetime.now(UTC)) + timedelta(seconds=self.reading_max_future_s)

    def websocket_origins(self, port: int) -> list[str]:
        return self.dashboard_allow_websocket_origins or [f"localhost:{port}", f"127.0.0.1:{port}"]
