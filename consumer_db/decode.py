"""From bus messages to what the sink stores: readings, alert events, and rejected records with a reason.

A message that cannot be read never stops the sink: it becomes a ``rejected_readings`` row carrying the
raw bytes (as text), the reason, and its origin (topic/partition/offset), which makes storing it again
on a redelivery a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from common.errors import SchemaError
from common.wire.bus import Message
from common.wire.schemas import (
    DEFAULT_POLICY,
    Alert,
    DeadLetter,
    HealthEvent,
    MaintenanceEntry,
    ReadingPolicy,
    ReadingValues,
    raw_excerpt,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    readings: str
    alerts: str
    dead_letters: str
    health: str | None = None  # health events (consumer_alerts' health pipeline); None: not stored
    maintenance: str | None = None  # the maintenance log (docs/maintenance.md); None: not stored

    def all(self) -> list[str]:
        return [self.readings, self.alerts, self.dead_letters] + [t for t in (self.health, self.maintenance) if t]


@dataclass
class Batch:
    readings: list[tuple[ReadingValues, Message]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    health: list[tuple[HealthEvent, Message]] = field(default_factory=list)
    maintenance: list[MaintenanceEntry] = field(default_factory=list)


def origin(message: Message) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


def rejected_row(message: Message, reason: str, *, robot_id: str | None = None) -> dict:
    """The message itself as a dead letter: where it sat in the topic, what it held, why it is refused."""
    return {
        "source": message.topic,
        "line": message.offset,
        "raw": raw_excerpt(message.value.decode("utf-8", "replace")),
        "reason": reason,
        "robot_id": robot_id if robot_id is not None else _key(message),
        "received_at": _received(message),
        "origin": origin(message),
    }


def dead_letter_row(letter: DeadLetter, message: Message) -> dict:
    """A dead letter published by another service, stored as it came (its own source, line, reason)."""
    return letter.model_dump(mode="python", exclude={"schema_version"}) | {"origin": origin(message)}


def decode(messages: list[Message], topics: Topics, policy: ReadingPolicy = DEFAULT_POLICY) -> Batch:
    batch = Batch()
    now = datetime.now(UTC)  # the policy's "how far ahead" is of the clock read once a batch, not per reading
    for message in messages:
        try:
            if message.topic == topics.readings:
                batch.readings.append((policy.read_message_values(message, now=now), message))
            elif message.topic == topics.alerts:
                batch.alerts.append(Alert.from_bytes(message.value))
            elif message.topic == topics.dead_letters:
                batch.rejected.append(dead_letter_row(DeadLetter.from_bytes(message.value), message))
            elif message.topic == topics.health:
                batch.health.append((HealthEvent.from_bytes(message.value), message))
            elif message.topic == topics.maintenance:
                batch.maintenance.append(read_entry(message.value, policy))
            else:
                batch.rejected.append(rejected_row(message, f"message from unexpected topic {message.topic}"))
        except SchemaError as exc:
            batch.rejected.append(rejected_row(message, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one message must never stop the sink: a dead letter, with why
            logger.exception("%s could not be read", origin(message))
            batch.rejected.append(rejected_row(message, f"could not be read: {type(exc).__name__}: {exc}"))
    return batch


def read_entry(raw: bytes, policy: ReadingPolicy) -> MaintenanceEntry:
    """A maintenance entry off the wire, its robot id held to the deployment's rule as a reading's is."""
    entry = MaintenanceEntry.from_bytes(raw)
    refused = policy.robot_problem(entry.robot_id)
    if refused:
        raise SchemaError(f"MaintenanceEntry: {refused}")
    return entry


def _key(message: Message) -> str | None:
    return message.key.decode("utf-8", "replace")[:64] if message.key else None


def _received(message: Message) -> datetime:
    if message.timestamp_ms is not None:
        try:
            return datetime.fromtimestamp(message.timestamp_ms / 1000, tz=UTC)
        except (OverflowError, ValueError, OSError):
            pass  # a producer's clock off the calendar (year 10000+): when it reached the sink will do
    return datetime.now(UTC)
