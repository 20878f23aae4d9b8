"""Settings of the dashboard, on top of the shared ones (environment names are the field names in upper case)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, field_validator
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
    dashboard_fleet_refresh_s: float = Field(
        60.0, ge=1, description="How often an open Fleet tab asks the database again (health changes hourly)."
    )

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
