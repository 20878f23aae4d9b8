"""The API's settings: the common ones plus where it listens and how large a page is."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from common.defaults import CENTURY_DAYS
from common.settings import CommonSettings

# A token's longest life, a century: `issue-token --days 3000000` (or API_TOKEN_DAYS) put its expiry past the year
# 9999, and the command stopped with an OverflowError traceback.
MAX_TOKEN_DAYS = CENTURY_DAYS


class ApiSettings(CommonSettings):
    """Environment names are the field names in upper case (``API_PORT``, ...)."""

    api_host: str = Field("0.0.0.0", description="Interface the API listens on.")
    api_port: int = Field(8080, ge=1, le=65535, description="Port of the API (JSON over HTTP).")
    api_page_size: int = Field(100, ge=1, description="Alerts per page when a request names no limit.")
    api_max_page_size: int = Field(1000, ge=1, description="Largest limit a request may ask for.")
    api_token_days: int = Field(
        90, ge=1, le=MAX_TOKEN_DAYS, description="Lifetime of a token issued without --days (at most a century)."
    )
    api_publish_timeout_s: float = Field(15.0, gt=0, description="Longest an acknowledgement may wait for Kafka.")
    api_user_password: SecretStr | None = Field(
        None, description="Password `add-user` gives the new user instead of asking for it (never an argument)."
    )
    api_metrics_port: int | None = Field(
        9105, ge=0, le=65535, description="Port of /metrics, /livez and /readyz; 0 or empty: none."
    )

    @field_validator("api_metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
