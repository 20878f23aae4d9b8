"""Settings of the dashboard, on top of the shared ones (environment names are the field names in upper case)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

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
    window_rows: int = Field(200, ge=10, description="Readings per axis in the live window.")
    x_axis_ticks: Literal["fixed", "auto"] = Field(
        "fixed", description="fixed: ticks at whole multiples of one interval, steady while the window scrolls."
    )
    stacked: bool = Field(False, description="Stacked areas instead of lines.")
    dashboard_stale_seconds: float = Field(
        15.0, gt=0, description="No new reading for this long: the page says disconnected and greys the chart."
    )
    dashboard_push_ms: int = Field(250, ge=20, description="Longest wait before new readings go to the pages.")
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
    dashboard_fleet_refresh_s: float = Field(
        60.0, ge=1, description="How often an open Fleet tab asks the database again (health changes hourly)."
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
