"""Messages on the wire: JSON, versioned, validated by pydantic.

A consumer that meets a version it does not know rejects the message with a clear reason (a
:class:`~common.errors.SchemaError`), so it can be routed to the dead letters instead of crashing.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal, NamedTuple, Protocol, Self, TypeVar

from pydantic import (
    AfterValidator,
    AllowInfNan,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictStr,
    ValidationError,
    field_validator,
)

from common.defaults import EARLIEST, MAX_ABS_AMPS, MAX_AXIS, MAX_FUTURE_S, MAX_ROBOTS, ROBOT_ID_PATTERN
from common.errors import SchemaError
from common.wire.outcomes import AckOutcome  # named here too, where the other enums are

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# The smallest |current| other than 0 a reading may carry. No instrument resolves anything near it (a
# femtoampere is 1e-15 A), and PostgreSQL raises an error instead of rounding to 0 when a double underflows:
# the square of a current below ~1.5e-154 A failed its minute's fold at every try, so one such value refused
# every later reading of its robot. At 1e-100 squares, means and means of squares all stay normal doubles.
MIN_NONZERO_AMPS = 1e-100
AXIS_NUMBERS = frozenset(range(1, MAX_AXIS + 1))  # a robot's axes are numbered 1 to MAX_AXIS (the rollup's bits)


def utc(value: datetime) -> datetime:
    """The same instant as a timezone-aware UTC datetime; a naive value is refused."""
    if value.tzinfo is None:
        raise ValueError("timestamp has no timezone; readings are always UTC")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is a valid datetime, but past the last UTC one
        raise ValueError(f"{value.isoformat()} is out of the representable range in UTC") from None


# Every time on the wire: aware, and read as the same instant in UTC. 0001-01-01T00:00+23:59 is valid ISO-8601 whose
# instant lies before the calendar's first day: refused here with the reason, where on an alert, a dead letter or a
# health event it reached the database's driver, which could not convert it, and stopped consumer_db for good.
UtcTime = Annotated[AwareDatetime, AfterValidator(utc)]


def iso_utc(value: datetime) -> str:
    """ISO-8601 with milliseconds and a ``Z``, the export's own format."""
    return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WireModel(BaseModel):
    """Base of every message: a schema version, JSON bytes in and out."""

    # Each message's validator is built at its first use, not at import: a command that only reads the
    # settings (which import this module for ReadingPolicy) validates no message.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> Self:
        # pydantic's own JSON parser takes half the time of json.loads + model_validate (every consumer decodes
        # every reading). It is trusted only with a message it accepts whole, version given, and in which no
        # key can have been given twice (it keeps the last one silently): anything else goes the careful way,
        # which says what is wrong.
        try:
            message = cls.model_validate_json(raw)
        except ValueError:
            message = None
        if (
            message is not None
            and "schema_version" in message.model_fields_set
            and _no_repeated_key(raw, message.key_count())
        ):
            return message
        return cls.from_bytes_checked(raw)

    def key_count(self) -> int:
        """How many JSON object keys this message was read from, each counted once."""
        return len(self.model_fields_set)

    @classmethod
    def check_keys(cls, data: dict) -> None:
        """The careful path's look at keys as written, before pydantic reads them."""

    @field_validator("schema_version", mode="before")
    @classmethod
    def _strict_version(cls, value: object) -> object:
        if type(value) is not int:  # `true` == 1 to Python and pydantic
            raise ValueError(f"schema_version must be the integer {SCHEMA_VERSION}")
        return value

    @classmethod
    def from_bytes_checked(cls, raw: bytes | str) -> Self:
        """``from_bytes`` without the fast path."""
        if not raw:
            raise SchemaError(f"{cls.__name__}: the message has no value (empty, or a Kafka tombstone)")
        try:
            data = json.loads(raw, object_pairs_hook=_refuse_repeated_keys)
        # ValueError also covers an integer of more than 4300 digits; RecursionError, arrays nested too deep.
        except (ValueError, RecursionError) as exc:
            raise SchemaError(f"{cls.__name__}: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise SchemaError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if type(version) is not int or version != SCHEMA_VERSION:  # `true` == 1 in Python
            raise SchemaError(
                f"{cls.__name__}: schema_version {version!r} is not supported (this build reads {SCHEMA_VERSION})"
            )
        cls.check_keys(data)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SchemaError(f"{cls.__name__}: {_short(exc)}") from exc


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {repeated!r} given twice")
    return data


# A quote followed by JSON's white space: one pass of a regular expression, where four `in` tests took three times
# as long (every reading pays it).
_QUOTE_THEN_SPACE = re.compile(rb'"[ \t\n\r]')


def _no_repeated_key(raw: bytes | str, keys: int) -> bool:
    """True when the text holds no key twice, proved cheaply: with no quote followed by white space, every
    key's closing quote is followed by its colon, so the text holds at least as many '":' as keys; if that
    count is the number of distinct keys read (``keys``), none was repeated. Otherwise the careful path decides."""
    text = raw if isinstance(raw, bytes) else raw.encode()
    if _QUOTE_THEN_SPACE.search(text):
        return False
    return text.count(b'":') == keys


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])


ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")  # not "1700000000", which pydantic reads as an epoch


# A current: a JSON number, never a text or a boolean, and finite (no NaN, no Infinity, no 1e999).
Amps = Annotated[float, Strict(), AllowInfNan(False)]


# A reading's axis as a key of its currents: an integer as JSON writes one (the policy then says which are axes).
AXIS_KEY = re.compile(r"-?[0-9]+")


class Reading(WireModel):
    """One row of a controller: the current of every axis at one instant. ``None`` is "OK null"
    (an axis without a load channel), never the same as 0 A.

    The shape is strict whatever the deployment: no value is coerced (``"12.5"``, ``true``, an integer
    epoch are refused), each axis has one canonical key, every current is finite. What is *plausible*
    (bounds, dates, robot ids) is the deployment's :class:`ReadingPolicy`."""

    robot_id: StrictStr = Field(min_length=1, max_length=64)
    ts: UtcTime
    row: int | None = Field(None, strict=True, description="Line number in the source file, when there is one.")
    currents: dict[int, Amps | None]

    @classmethod
    def check_keys(cls, data: dict) -> None:
        # "01" is axis 1 too: beside "1", one of the two values would be dropped without a word.
        currents = data.get("currents")
        if isinstance(currents, dict):
            seen: dict[int, str] = {}
            for key in currents:
                if not AXIS_KEY.fullmatch(key):
                    continue  # _plain_axis_keys says what is wrong with it
                try:
                    axis = int(key)
                except ValueError:
                    continue  # past 4300 digits: pydantic says so
                if axis in seen:
                    raise SchemaError(f"Reading: axis {axis} given twice ({seen[axis]!r} and {_excerpt(key)})")
                seen[axis] = key

    @field_validator("currents", mode="before")
    @classmethod
    def _plain_axis_keys(cls, value: object) -> object:
        # Pydantic, like int(), reads the key "1_0" as axis 10, and " 1", "+1", "1.0" as axis 1. (All the keys
        # joined and looked at once: half the time of a regular expression per key, on every reading.)
        if isinstance(value, dict) and value and isinstance(next(iter(value)), str):
            keys = "".join(value)
            if not (keys.isdecimal() and keys.isascii()):
                for key in value:
                    if not AXIS_KEY.fullmatch(key):
                        raise ValueError(f"axis key {_excerpt(key)} is not an integer in plain digits 0-9")
        return value

    @field_validator("ts", mode="before")
    @classmethod
    def _iso_text(cls, value: object) -> object:
        if isinstance(value, datetime):
            return value
        if not isinstance(value, str) or not ISO_TIME.match(value):
            raise ValueError(f"expected an ISO-8601 time text such as 2024-01-31T12:00:00Z, got {_excerpt(value)}")
        return value

    def key_count(self) -> int:
        return len(self.model_fields_set) + len(self.currents)

    @property
    def is_idle(self) -> bool:
        """All axes that report read 0 A: the robot is standing still."""
        values = [v for v in self.currents.values() if v is not None]
        return bool(values) and all(v == 0 for v in values)


class ReadingValues(NamedTuple):
    """A reading's values without the pydantic model, as the sink keeps them (``ReadingPolicy.read_values``):
    making a ``Reading`` costs more than reading the message's JSON does."""

    robot_id: str
    ts: datetime
    row: int | None
    currents: dict[int, float | None]


def _excerpt(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Keyed(Protocol):
    """A message as a bus delivers it (``common.wire.bus.Message``): its key and its value."""

    key: bytes | None
    value: bytes


R = TypeVar("R", Reading, ReadingValues)


class ReadingPolicy(BaseModel):
    """What a deployment accepts as a plausible reading; anything else is a dead letter with the reason.
    One object, built from the settings once (``CommonSettings.reading_policy``) and applied on every
    path a reading comes in by: the readings topic (consumer_db, consumer_alerts, the dashboard's feed)
    and every controller export (ingest, train, replay, score, the producer's replay). Defaults are
    sane both for a live fleet and for old offline data (NAB's files are dated 2013-2015)."""

    model_config = ConfigDict(frozen=True)

    max_abs_amps: float = Field(MAX_ABS_AMPS, gt=0, description="Largest |current| in A a motor can draw.")
    max_future_s: float = Field(
        MAX_FUTURE_S, ge=0, description="How far a reading's time may lie ahead of the receiver's clock."
    )
    earliest: AwareDatetime = Field(EARLIEST, description="Readings before are refused.")
    robot_id_pattern: str = Field(ROBOT_ID_PATTERN, description="Regular expression a whole robot id must match.")
    robot_ids_allowed: frozenset[str] = Field(
        frozenset(), description="If not empty, the only robot ids accepted (an allow-list)."
    )
    max_robots: int = Field(MAX_ROBOTS, ge=1, description="Robots a service takes on at most; later new ids refused.")

    @field_validator("robot_id_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)  # a bad pattern fails at start-up, not at every reading
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @cached_property
    def _robot_id(self) -> re.Pattern[str]:
        return re.compile(self.robot_id_pattern)

    @cached_property
    def _max_ahead(self) -> timedelta:
        return timedelta(seconds=self.max_future_s)

    @cached_property
    def _plain_values(self) -> Callable[[bytes | str], ReadingValues | None]:
        # msgspec is imported at the first reading read this way, not by every command that reads the settings.
        from common.wire.plain_reading import plain_values

        return plain_values

    def robot_problem(self, robot_id: str) -> str | None:
        if not self._robot_id.fullmatch(robot_id):
            return f"robot id {_excerpt(robot_id, 80)} does not match ROBOT_ID_PATTERN {self.robot_id_pattern}"
        if self.robot_ids_allowed and robot_id not in self.robot_ids_allowed:
            return f"robot id {robot_id!r} is not in ROBOT_IDS_ALLOWED"
        return None

    def problem(
        self, robot_id: str, ts: datetime, currents: dict[int, float | None], *, now: datetime | None = None
    ) -> str | None:
        """Why the reading is not plausible, or None."""
        refused = self.robot_problem(robot_id)
        if refused:
            return refused
        if ts < self.earliest:
            return f"time {iso_utc(ts)} is before READING_EARLIEST {iso_utc(self.earliest)}"
        ahead = ts - (now or datetime.now(UTC))
        if ahead > self._max_ahead:
            return (
                f"time {iso_utc(ts)} is {ahead.total_seconds():.0f} s ahead of this receiver's clock "
                f"(READING_MAX_FUTURE_S {self.max_future_s:g})"
            )
        if not currents.keys() <= AXIS_NUMBERS:
            # An axis no robot has: a message of up to 80,000 made-up axes cost consumer_alerts ~1 GB and ~10 s
            # of CPU for one robot (a state and detectors for each), and an axis 0 is its robot-level detectors'.
            axis = next(a for a in currents if a not in AXIS_NUMBERS)
            return f"axis {_excerpt(str(axis), 40)} is not an axis number from 1 to {MAX_AXIS}"
        values = list(filter(None, currents.values()))  # None and 0.0 left out: neither is beyond a bound
        if not values:
            return None
        bound, low, high = self.max_abs_amps, min(values), max(values)
        if high > bound or low < -bound:
            axis, amps = next((a, v) for a, v in currents.items() if v is not None and not -bound <= v <= bound)
            return f"axis {axis}: current {amps!r} A is beyond READING_MAX_ABS_AMPS {bound:g}"
        # The smallest |current|: the lowest when all are positive (every reading of the real export), with
        # no pass of abs over the currents (a third more of this check's time); else that pass.
        smallest = low if low > 0 else -high if high < 0 else min(map(abs, values))
        if smallest < MIN_NONZERO_AMPS:
            axis, amps = next((a, v) for a, v in currents.items() if v and abs(v) < MIN_NONZERO_AMPS)
            return (
                f"axis {axis}: current {amps!r} A is nonzero and below {MIN_NONZERO_AMPS:g} A, "
                "the smallest current taken other than 0"
            )
        return None

    def check(self, reading: Reading, *, now: datetime | None = None) -> Reading:
        """The reading, or :class:`SchemaError` with the reason."""
        refused = self.problem(reading.robot_id, reading.ts, reading.currents, now=now)
        if refused:
            raise SchemaError(f"Reading: {refused}")
        return reading

    def read(self, raw: bytes | str, *, now: datetime | None = None) -> Reading:
        """A reading off the wire, shape and plausibility checked; :class:`SchemaError` otherwise."""
        return self.check(Reading.from_bytes(raw), now=now)

    def read_message(self, message: Keyed, *, now: datetime | None = None) -> Reading:
        """A reading off the readings topic: ``read``, and its message key must be its robot id."""
        return self._keyed(message.key, self.read(message.value, now=now))

    def read_message_values(self, message: Keyed, *, now: datetime | None = None) -> ReadingValues:
        """The same as plain values (``read_values``)."""
        return self._keyed(message.key, self.read_values(message.value, now=now))

    @staticmethod
    def _keyed(key: bytes | None, reading: R) -> R:
        # Kafka partitions by key and each partition has one reader in a group: a robot's readings keyed
        # otherwise (another id, none) can land on two partitions, and two instances then judge it apart.
        if key != reading.robot_id.encode():
            shown = _excerpt(key.decode(errors="replace"), 80) if key is not None else "none"
            raise SchemaError(
                f"Reading: message key {shown} is not its robot id {_excerpt(reading.robot_id, 80)} "
                "(the readings topic is partitioned by robot: key each reading by its robot id)"
            )
        return reading

    def read_values(self, raw: bytes | str, *, now: datetime | None = None) -> ReadingValues:
        """What ``read`` accepts, as plain values, at about half its cost: msgspec's parse
        (``common.wire.plain_reading``) where it provably reads the message as pydantic does, ``read`` itself
        for everything else and for every refusal, so the verdict and its reason are ``read``'s."""
        values = self._plain_values(raw)
        if values is not None and self.problem(values.robot_id, values.ts, values.currents, now=now) is None:
            return values
        reading = self.read(raw, now=now)
        return ReadingValues(reading.robot_id, reading.ts, reading.row, reading.currents)


DEFAULT_POLICY = ReadingPolicy()


class RobotRoster:
    """The robots a service has taken on, at most ``policy.max_robots``: a stream of made-up ids must not
    grow tables, detector state and the dashboard's robot list without end. A new id is logged (escaped)
    when admitted; one past the cap is refused with the reason, for the dead letters."""

    def __init__(self, policy: ReadingPolicy, known: Iterable[str] = (), *, service: str = "") -> None:
        self.policy = policy
        self.known: set[str] = set(known)
        self.service = service

    def admit(self, robot_id: str) -> str | None:
        """None when the robot may go on, else why not."""
        if robot_id in self.known:
            return None
        if len(self.known) >= self.policy.max_robots:
            return f"new robot id {robot_id!r} refused: {len(self.known)} robots known already (MAX_ROBOTS)"
        self.known.add(robot_id)
        logger.info("%s: new robot id %r (%d robots known)", self.service, robot_id, len(self.known))
        return None


# The detector name of the alert the health forecast raises before a joint's limit (consumer_alerts.health),
# which the notifier sends as "maintenance due".
MAINTENANCE_DUE_DETECTOR = "maintenance_due"


class Severity(enum.StrEnum):
    INFO = "INFO"  # news, not trouble: e.g. a robot's model being learned again after a change of program
    ALERT = "ALERT"
    ERROR = "ERROR"


class AlertState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


ACK_NOTE_CHARS = 2000


NUL_REFUSED = "holds a NUL character, which no name, note or time stored can (PostgreSQL's text cannot)"


def _without_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError(NUL_REFUSED)
    return text


# Text that is stored and looked up as it is (an event's id; a note or a user name given to the API): with a
# NUL the database's driver refuses the statement, so the notifier, which looks events up by id, retried one
# such alert for ever and notified nothing more.
StoredText = Annotated[str, AfterValidator(_without_nul)]


class Alert(WireModel):
    """The current state of one alert event. Every change (open, escalate, peak, close, acknowledge)
    publishes the whole event again under the same ``event_id``; the newest state wins."""

    event_id: StoredText = Field(min_length=1, max_length=200)
    robot_id: str
    # 0: the robot as a whole. An axis past the largest double (10**400) on the alerts topic stopped every
    # dashboard page from being built, its serialiser failing on the alert table, until the event aged out.
    axis: int = Field(ge=0, le=MAX_AXIS)
    detector: str
    severity: Severity
    state: AlertState
    opened_at: UtcTime
    closed_at: UtcTime | None = None
    peak_amps: float | None = None
    threshold: float | None = None
    score: float | None = None
    acknowledged_by: str | None = None
    acknowledged_at: UtcTime | None = None
    # Added later, optional: messages written before them still read.
    ack_outcome: AckOutcome | None = None
    ack_note: str | None = Field(None, max_length=ACK_NOTE_CHARS)

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
                "ack_outcome": self.ack_outcome if newer.ack_outcome is None else newer.ack_outcome,
                "ack_note": self.ack_note if newer.ack_note is None else newer.ack_note,
            }
        )

    def acknowledged(self, who: str, at: datetime, outcome: AckOutcome | None = None, note: str | None = None) -> Alert:
        """This event acknowledged by ``who`` at ``at``: the message the dashboard and the API publish."""
        update = {"acknowledged_by": who, "acknowledged_at": at, "ack_outcome": outcome, "ack_note": note}
        return self.model_validate(self.model_dump() | update)


class MaintenanceAction(enum.StrEnum):
    """What was done to a joint (docs/maintenance.md); ``part_replaced`` restarts its baseline and trend."""

    PART_REPLACED = "part_replaced"
    INSPECTED_OK = "inspected_ok"
    LUBRICATED = "lubricated"
    OTHER = "other"


class MaintenanceEntry(WireModel):
    """One entry of the maintenance log, on the maintenance topic (keyed by robot id): logged on its own, or
    made by an acknowledgement whose outcome is ``part_replaced`` (``event_id`` then names the alert).
    ``entry_id`` is chosen once by whoever logs it, so a message delivered twice is stored once."""

    entry_id: StrictStr = Field(min_length=1, max_length=300)
    robot_id: StrictStr = Field(min_length=1, max_length=64)
    axis: int = Field(ge=1, le=MAX_AXIS, strict=True)
    at: UtcTime
    action: MaintenanceAction
    note: str | None = Field(None, max_length=ACK_NOTE_CHARS)
    user_name: StrictStr = Field(min_length=1, max_length=200)
    event_id: str | None = Field(None, min_length=1, max_length=200)

    @classmethod
    def new(
        cls,
        robot_id: str,
        axis: int,
        action: MaintenanceAction,
        who: str,
        at: datetime,
        note: str | None = None,
        event_id: str | None = None,
    ) -> MaintenanceEntry:
        """A new entry with its own id (an acknowledgement's entry is named after the event and the moment)."""
        entry_id = f"ack:{event_id}:{iso_utc(at)}" if event_id else f"log:{uuid.uuid4().hex}"
        return cls(
            entry_id=entry_id,
            robot_id=robot_id,
            axis=axis,
            at=at,
            action=action,
            note=note,
            user_name=who,
            event_id=event_id,
        )


RAW_EXCERPT_CHARS = 2000  # of a rejected record's text kept: enough to see what it was, not a 900 KB blob


def raw_excerpt(text: str) -> str:
    """The start of a rejected record's text, saying how long it was when cut."""
    if len(text) <= RAW_EXCERPT_CHARS:
        return text
    return f"{text[:RAW_EXCERPT_CHARS]}... [cut: {len(text)} characters in all]"


class DeadLetter(WireModel):
    """Input that could not be used, with where it came from and why."""

    source: str = Field(description="File name or topic the record came from.")
    line: int | None = Field(None, description="Line number in the file, or offset in the topic.")
    raw: str
    reason: str
    robot_id: str | None = None
    received_at: UtcTime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("raw")
    @classmethod
    def _excerpt(cls, value: str) -> str:
        return raw_excerpt(value)


class CycleAxis(BaseModel):
    """One axis's health indicators over one work cycle (consumer_alerts.health.cycles)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    axis: int
    energy_as: float  # ∫A dt
    energy_a2s: float  # ∫A² dt
    peak_amps: float
    rms_amps: float
    covered_s: float  # seconds of the cycle the axis reported a number
    deviation: float | None = None  # rms / learned normal - 1; None while the normal is being learned


# Days a forecast may name from its time, either way: the forecast's own horizon is 120 days (beyond it: None).
# A century is far past it, and far inside the calendar: 1e7 days on the health topic, stored, answered every
# GET /v1/health/forecasts with a 500 (PostgreSQL's double overflowed, then Python's datetime).
ForecastDays = Annotated[float, AllowInfNan(False), Field(ge=-36_500, le=36_500)]


class AxisForecast(BaseModel):
    """One axis's health trend and when it will cross its limit (consumer_alerts.health.forecast)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    axis: int
    level: float  # the trend's deviation from normal now
    slope_per_day: float
    limit: float
    days_left: ForecastDays | None = None  # None: no crossing forecast within the horizon
    low_days: ForecastDays | None = None  # 80 % interval of days_left (None: beyond the horizon)
    high_days: ForecastDays | None = None


class HealthEvent(WireModel):
    """A health event of one robot, on the health topic: a finished work cycle with its indicators per axis
    (``kind`` "cycle", ``start``/``end`` the cycle's), or the trend and forecast of the axes updated this hour
    (``kind`` "forecast", ``start`` the time of the forecast). Keyed by robot id; a replay re-derives the same
    events, and consumer_db stores them by (robot, axis, start), so a message twice is stored once."""

    robot_id: StrictStr = Field(min_length=1, max_length=64)
    kind: Literal["cycle", "forecast"]
    start: UtcTime
    end: UtcTime | None = None
    cold: bool = False  # the cycle started soon after a long stoppage: not judged
    cut: bool = False  # the cycle was cut (gap, too long, end of feed): not judged
    axes: list[CycleAxis] = Field(default_factory=list)
    forecasts: list[AxisForecast] = Field(default_factory=list)
