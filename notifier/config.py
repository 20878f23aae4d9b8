"""The channel file: where notifications go and which ones each channel wants (docs/notifier.md).

One YAML (or TOML) file, read once at start and validated whole: a typo fails the start with the line's
field named, not the first alert at night. The file holds no secret: each channel names the environment
variable (or .env entry) that holds its password, signing secret or chat URL, and those are read here once.
"""

from __future__ import annotations

import os
import tomllib
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from common.settings import parse_axes
from common.wire.schemas import MAINTENANCE_DUE_DETECTOR, Severity

# The changes a channel can ask for (notifier.rules.changes finds them); reminders come with remind_every_min.
Change = Literal["open", "escalate", "maintenance_due", "close"]
DEFAULT_CHANGES: list[Change] = ["open", "escalate", "maintenance_due"]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QuietHours(Strict):
    """Local times (in ``timezone``) during which the channel is not disturbed; ``end`` before ``start``
    runs across midnight. A notification due meanwhile waits until ``end``."""

    start: time
    end: time
    timezone: str = "UTC"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock_text(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted 22:00 as the number 1320 (base 60), which would be 00:22:00
        if not isinstance(value, str | time):
            raise ValueError(f'write the time as text in quotes, e.g. "22:00" (got {value!r})')
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from exc
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end at the same time")
        return self


class Retry(Strict):
    """Attempts of one delivery: the wait doubles from ``initial_s`` up to ``max_s`` between them."""

    attempts: int = Field(5, ge=1, le=50)
    initial_s: float = Field(1.0, gt=0)
    max_s: float = Field(60.0, gt=0)


class Channel(Strict):
    """What every kind of channel shares: its name and its rules."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    min_severity: Severity = Severity.ALERT
    robots: list[str] = Field(default_factory=list, description="Robot ids or glob patterns; empty: every robot.")
    axes: list[int] = Field(default_factory=list, description="Axes (e.g. '1-6' or [1, 2]); empty: every axis.")
    changes: list[Change] = Field(default_factory=lambda: list(DEFAULT_CHANGES))
    quiet_hours: QuietHours | None = None
    remind_every_min: float | None = Field(None, gt=0, description="Reminder while open and unacknowledged.")
    retry: Retry = Retry()

    @field_validator("axes", mode="before")
    @classmethod
    def _axes(cls, value: object) -> object:
        return parse_axes(value) if value not in (None, [], "") else []


class EmailChannel(Channel):
    kind: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = Field(True, description="Upgrade with STARTTLS and refuse a server that cannot.")
    ca_file: Path | None = Field(None, description="CA bundle for a server with a private CA.")
    username: str | None = None
    password_env: str | None = Field(None, description="Environment variable holding the SMTP password.")
    sender: str
    to: list[str] = Field(min_length=1)
    password: SecretStr | None = Field(None, exclude=True)


class WebhookChannel(Channel):
    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret_env: str = Field(description="Environment variable holding the HMAC-SHA256 signing secret.")
    ca_file: Path | None = None
    secret: SecretStr | None = Field(None, exclude=True)


class AppriseChannel(Channel):
    kind: Literal["apprise"]
    urls_env: str = Field(description="Environment variable holding the Apprise URLs (they carry tokens).")
    urls: SecretStr | None = Field(None, exclude=True)


AnyChannel = Annotated[EmailChannel | WebhookChannel | AppriseChannel, Field(discriminator="kind")]


class ChannelFile(Strict):
    maintenance_detectors: list[str] = Field(
        default_factory=lambda: [MAINTENANCE_DUE_DETECTOR],
        description="Detectors whose events mean maintenance is due: their opening is 'maintenance_due'.",
    )
    channels: list[AnyChannel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ChannelFile:
        names = [c.name for c in self.channels]
        if len(names) != len(set(names)):
            raise ValueError(f"channel names must be unique: {names}")
        return self


SECRET_FIELDS = {"password_env": "password", "secret_env": "secret", "urls_env": "urls"}


def load_channels(path: Path, *, env_file: Path | None = Path(".env")) -> ChannelFile:
    """Read and validate the file, then fill in each channel's secret from the environment or ``env_file``.
    A secret named but not set fails here, at start."""
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
        parsed = ChannelFile.model_validate(data or {})
    except (yaml.YAMLError, ValueError) as exc:  # pydantic's ValidationError and TOML's errors are ValueErrors
        raise ValueError(f"channel file {path}: {exc}") from None
    dotenv = dotenv_values(env_file) if env_file is not None and env_file.exists() else {}
    channels = []
    for channel in parsed.channels:
        secrets = {}
        for name_field, secret_field in SECRET_FIELDS.items():
            variable = getattr(channel, name_field, None)
            if variable is None:
                continue
            value = os.environ.get(variable) or dotenv.get(variable)
            if not value:
                raise ValueError(f"channel {channel.name}: {name_field} names {variable}, which is not set")
            secrets[secret_field] = SecretStr(value)
        channels.append(channel.model_copy(update=secrets))
    return parsed.model_copy(update={"channels": channels})
