"""Messages on the wire: JSON, versioned, validated by pydantic.

A consumer that meets a version it does not know rejects the message with a clear reason (a
:class:`~common.errors.SchemaError`), so it can be routed to the dead letters instead of crashing.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import SchemaError

SCHEMA_VERSION = 1


def utc(value: datetime) -> datetime:
    """The same instant as a timezone-aware UTC datetime; a naive value is refused."""
    if value.tzinfo is None:
        raise ValueError("timestamp has no timezone; readings are always UTC")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is a valid datetime, but past the last UTC one
        raise ValueError(f"{value.isoformat()} is out of the representable range in UTC") from None


def iso_utc(value: datetime) -> str:
    """ISO-8601 with milliseconds and a ``Z``, the export's own format."""
    return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WireModel(BaseModel):
    """Base of every message: a schema version, JSON bytes in and out."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> Self:
        # pydantic's own JSON parser takes half the time of json.loads + model_validate (every consumer decodes
        # every reading). It is trusted only with a message it accepts whole, version given: anything else
        # goes the careful way, which says what is wrong.
        try:
            message = cls.model_validate_json(raw)
        except ValueError:
            message = None
        if message is not None and "schema_version" in message.model_fields_set:
            return message
        return cls.from_bytes_checked(raw)

    @classmethod
    def from_bytes_checked(cls, raw: bytes | str) -> Self:
        """``from_bytes`` without the fast path."""
        try:
            data = json.loads(raw)
        # ValueError also covers an integer of more than 4300 digits; RecursionError, arrays nested too deep.
        except (ValueError, RecursionError) as exc:
            raise SchemaError(f"{cls.__name__}: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise SchemaError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaError(
                f"{cls.__name__}: schema_version {version!r} is not supported (this build reads {SCHEMA_VERSION})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SchemaError(f"{cls.__name__}: {_short(exc)}") from exc


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])


class Reading(WireModel):
    """One row of a controller: the current of every axis at one instant. ``None`` is "OK null"
    (an axis without a load channel), never the same as 0 A."""

    robot_id: str = Field(min_length=1, max_length=64)
    ts: AwareDatetime
    row: int | None = Field(None, description="Line number in the source file, when there is one.")
    currents: dict[int, float | None]

    @field_validator("ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return utc(value)

    @property
    def is_idle(self) -> bool:
        """All axes that report read 0 A: the robot is standing still."""
        values = [v for v in self.currents.values() if v is not None]
        return bool(values) and all(v == 0 for v in values)


class Severity(enum.StrEnum):
    ALERT = "ALERT"
    ERROR = "ERROR"


class AlertState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Alert(WireModel):
    """The current state of one alert event. Every change (open, escalate, peak, close, acknowledge)
    publishes the whole event again under the same ``event_id``; the newest state wins."""

    event_id: str = Field(min_length=1, max_length=200)
    robot_id: str
    axis: int
    detector: str
    severity: Severity
    state: AlertState
    opened_at: AwareDatetime
    closed_at: AwareDatetime | None = None
    peak_amps: float | None = None
    threshold: float | None = None
    score: float | None = None
    acknowledged_by: str | None = None
    acknowledged_at: AwareDatetime | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.closed_at is None else (self.closed_at - self.opened_at).total_seconds()

    def merged_with(self, newer: Alert) -> Alert:
        """This event (the version held) once a newer message of it arrives: the newer one sets the state,
        closed_at, score and threshold; opened_at stays; severity and peak never go down; an acknowledgement,
        once set, stays unless the newer message sets it again. The one rule for the dashboard, the alerts
        topic read back and consumer_db, whose SQL upsert applies it too (tests/unit/test_alert_merge.py)."""
        peaks = [p for p in (self.peak_amps, newer.peak_amps) if p is not None]
        return newer.model_copy(
            update={
                "opened_at": self.opened_at,
                "severity": Severity.ERROR if Severity.ERROR in (self.severity, newer.severity) else newer.severity,
                "peak_amps": max(peaks) if peaks else None,
                "acknowledged_by": self.acknowledged_by if newer.acknowledged_by is None else newer.acknowledged_by,
                "acknowledged_at": self.acknowledged_at if newer.acknowledged_at is None else newer.acknowledged_at,
            }
        )


class DeadLetter(WireModel):
    """Input that could not be used, with where it came from and why."""

    source: str = Field(description="File name or topic the record came from.")
    line: int | None = Field(None, description="Line number in the file, or offset in the topic.")
    raw: str
    reason: str
    robot_id: str | None = None
    received_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
