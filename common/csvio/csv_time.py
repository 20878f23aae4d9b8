"""Time stamps of a controller export, always to timezone-aware UTC.

A stamp with an offset or a ``Z`` is converted; a naive one is read in the configured zone. A naive
local time that a DST change makes ambiguous (it happens twice) or impossible (it is skipped) cannot be
placed on the time line, so it is refused with a reason instead of being guessed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.errors import ConfigurationError

UTC = UTC


def zone(name: str) -> timezone | ZoneInfo:
    """The zone called ``name`` (``UTC``, ``Europe/Berlin``...), or a clear configuration error."""
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from exc


class TimeParser:
    """Callable: ISO-8601 text -> aware UTC datetime, or ``ValueError`` with a short reason."""

    def __init__(self, zone_name: str = "UTC") -> None:
        self.zone = zone(zone_name)
        self.zone_name = zone_name

    def __call__(self, text: str) -> datetime:
        text = text.strip()
        if not text:
            raise ValueError("empty time")
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an ISO-8601 time") from None
        try:
            return self.to_utc(value)
        except OverflowError:  # e.g. 9999-12-31T23:00-05:00: a valid local time past datetime's UTC range
            raise ValueError(f"{text!r} is out of the representable range in UTC") from None

    def to_utc(self, value: datetime) -> datetime:
        if value.tzinfo is UTC:
            return value
        if value.tzinfo is not None:
            return value.astimezone(UTC)
        return self._localize(value)

    def _localize(self, naive: datetime) -> datetime:
        if self.zone is UTC:
            return naive.replace(tzinfo=UTC)
        first, second = naive.replace(tzinfo=self.zone, fold=0), naive.replace(tzinfo=self.zone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return first.astimezone(UTC)
        if first.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) == naive:
            raise ValueError(f"{naive.isoformat()} is ambiguous in {self.zone_name} (a DST change repeats it)")
        raise ValueError(f"{naive.isoformat()} does not exist in {self.zone_name} (a DST change skips it)")
