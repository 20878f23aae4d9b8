"""The blocking half of the sink: one batch of messages, one database transaction (run in a thread)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine

from common.store.conflicts import find_conflicts
from common.store.joint_health import store_health
from common.store.maintenance import store_entries
from common.wire.bus import Message
from common.wire.schemas import DEFAULT_POLICY, ReadingPolicy, ReadingValues, RobotRoster
from consumer_db.alert_store import upsert_alerts
from consumer_db.axislock import AxisLock, Rejected
from consumer_db.decode import Batch, Topics, decode, origin, rejected_row
from consumer_db.retry import is_content_error, short_error
from consumer_db.rollup_writer import NewRows, add
from consumer_db.store import (
    insert_rejected,
    may_conflict,
    uses_copy,
    wide_copy_text,
    write_wide_readings,
)
from consumer_db.turns import GiveWay, Turn

logger = logging.getLogger(__name__)
REFUSED = "refused by the database: "  # the dead letter's reason, before the database's own


@dataclass
class WriteReport:
    messages: int = 0
    readings: int = 0
    rows_new: int = 0
    rows_seen: int = 0
    alerts: int = 0
    rejected: int = 0
    conflicts: int = 0
    health_rows: int = 0  # cycle x axis rows, rollup rows and forecasts written from health events
    maintenance: int = 0  # maintenance log entries new to the table
    refused: int = 0  # messages the database refused, each a dead letter (counted in ``rejected`` too)

    def add(self, other: WriteReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Prepared:
    """A batch decoded and turned into rows, ready for its transaction: one ``(robot_id, ts, axes, amps)``
    row per reading (the stored form on PostgreSQL, ``consumer_db.store.wide_rows``), made straight from
    the readings, and what they hold for the rollup (``new``: minutes, spans, long rows)."""

    messages: list[Message]
    batch: Batch
    rows: list[tuple]
    accepted: int
    new: NewRows = field(default_factory=NewRows)
    copy: str | None = None  # the rows in COPY's text format, when they will go through COPY
    refused: Exception | None = None  # the database refused to seed a new robot's axes (e.g. NUL in its id)


class Sink:
    def __init__(
        self,
        engine: Engine,
        lock: AxisLock,
        topics: Topics,
        *,
        copy_min_rows: int = 1000,
        policy: ReadingPolicy = DEFAULT_POLICY,
        roster: RobotRoster | None = None,
    ) -> None:
        self.engine = engine
        self.lock = lock
        self.topics = topics
        self.copy_min_rows = copy_min_rows
        self.policy = policy
        self.roster = roster or RobotRoster(policy, service="consumer_db")

    def write(self, messages: list[Message]) -> WriteReport:
        return self.store(self.prepare(messages))

    def prepare(self, messages: list[Message]) -> Prepared:
        """Decode the messages, build their rows under the schema lock and their COPY text; no transaction
        yet, so the service does this for the next batch while the previous one's transaction runs."""
        batch = decode(messages, self.topics, self.policy)
        robots = self._admit(batch)
        try:
            axes = self.lock.for_robots(robots)
        except Exception as exc:
            if not is_content_error(exc):
                raise
            return Prepared(messages, batch, [], 0, refused=exc)  # raised by store, which then isolates it
        rows: list[tuple] = []
        accepted = 0
        for reading, message in batch.readings:
            try:
                row = axes[reading.robot_id].wide(reading.robot_id, reading.ts, reading.currents)
                accepted += 1
                if row[2]:  # a reading with no axis to store (every axis retired, no value) makes no row
                    rows.append(row)
            except Rejected as exc:
                batch.rejected.append(rejected_row(message, str(exc), robot_id=reading.robot_id))
            except Exception as exc:  # noqa: BLE001 - one reading must never stop the sink
                logger.exception("%s: rows could not be made", origin(message))
                reason = f"rows could not be made: {type(exc).__name__}: {exc}"
                batch.rejected.append(rejected_row(message, reason, robot_id=reading.robot_id))
        new = NewRows.of_wide(rows)
        copy = wide_copy_text(rows) if uses_copy(self.engine.dialect.name, new.count, self.copy_min_rows) else None
        return Prepared(messages, batch, rows, accepted, new, copy)

    def _admit(self, batch: Batch) -> list[str]:
        """The batch's robots the roster takes on, each asked once, in the order they first come (readings
        before health events); readings and health events of robots it has no room for become rejected
        records, before axes_dim or the health tables grow. Returns the readings' robots taken on: only
        readings seed axes_dim."""
        robots = dict.fromkeys(reading.robot_id for reading, _ in batch.readings)
        asked = dict.fromkeys([*robots, *(event.robot_id for event, _ in batch.health)])
        refused = {robot_id: reason for robot_id in asked if (reason := self.roster.admit(robot_id))}
        if refused:
            batch.readings = _without_refused(batch.readings, refused, batch.rejected)
            batch.health = _without_refused(batch.health, refused, batch.rejected)
        return [robot_id for robot_id in robots if robot_id not in refused]

    def store(self, prepared: Prepared, turn: Turn | None = None) -> WriteReport:
        """Store the batch in one transaction, in its ``turn`` (see consumer_db.turns). If the database or its
        driver refuses its content (``is_content_error``), store it in halves instead, and each half that is
        refused in halves again, down to the offending messages, each then a dead letter with the database's
        reason: a few transactions more for one bad message in a batch of thousands, not one per message.
        Any other failure (the database away, read-only, locked) propagates, for the caller to retry the
        whole batch; what a half stored meanwhile is stored again unchanged, as every write is idempotent."""
        turn = turn or Turn()
        try:
            return self._store_in_turn(prepared, turn)
        except Exception as exc:
            if not is_content_error(exc):
                raise
            return self._isolate(prepared.messages, exc, turn)

    def _isolate(self, messages: list[Message], exc: Exception, turn: Turn) -> WriteReport:
        if len(messages) == 1:
            (message,) = messages
            reason = f"{REFUSED}{short_error(exc)}"
            logger.warning("%s: %s", origin(message), reason)
            with self.engine.begin() as conn:
                insert_rejected(conn, [rejected_row(message, reason)])
            return WriteReport(messages=1, rejected=1, refused=1)
        logger.warning(
            "batch of %d refused by the database (%s); writing it in halves", len(messages), short_error(exc)
        )
        report = WriteReport()
        half = len(messages) // 2
        for part in (messages[:half], messages[half:]):
            try:
                report.add(self._store_in_turn(self.prepare(part), turn))
            except Exception as refused:
                if not is_content_error(refused):
                    raise
                report.add(self._isolate(part, refused, turn))
        return report

    def _store_in_turn(self, prepared: Prepared, turn: Turn) -> WriteReport:
        overlap = self.engine.dialect.name == "postgresql"  # SQLite: one writer at a time
        try:
            return self._store(prepared, turn, overlap=overlap)
        except GiveWay:
            logger.info(
                "batch of %d held up the one before it; writing it again after that one", len(prepared.messages)
            )
            return self._store(prepared, turn, overlap=False)

    def _store(self, prepared: Prepared, turn: Turn, *, overlap: bool) -> WriteReport:
        if prepared.refused is not None:
            raise prepared.refused
        if not overlap:
            turn.wait()
        batch, rows = prepared.batch, prepared.rows
        with self.engine.begin() as conn:
            new = write_wide_readings(
                conn, rows, copy_min_rows=self.copy_min_rows, text=prepared.copy, batch=prepared.new
            )
            conflicts = self._conflicts(conn, batch, rows) if new.count < prepared.new.count else []
            turn.wait(conn)  # from here on, in batch order
            add(conn, new)
            alerts = upsert_alerts(conn, batch.alerts)
            insert_rejected(conn, batch.rejected + conflicts)
            health = store_health(conn, [event for event, _ in batch.health])
            maintenance = store_entries(conn, batch.maintenance)
        return WriteReport(
            messages=len(prepared.messages),
            readings=prepared.accepted - len(conflicts),
            rows_new=new.count,
            rows_seen=prepared.new.count - new.count,
            alerts=alerts,
            rejected=len(batch.rejected) + len(conflicts),
            conflicts=len(conflicts),
            health_rows=health.cycles + health.rollups + health.forecasts,
            maintenance=maintenance,
        )

    @staticmethod
    def _conflicts(conn: Connection, batch: Batch, rows: list[tuple]) -> list[dict]:
        """Readings some of whose rows were there already (a redelivery, or a second reading of the same
        robot and time): the ones whose values differ from those stored are kept as conflict records, with
        both values, not dropped. Only asked when a write skipped rows, so a plain stream never pays, and
        only of the readings ``may_conflict`` names, so a redelivered batch costs one statement."""
        suspects = may_conflict(conn, batch.readings, _reading_key, rows)
        found = []
        for (reading, message), reason in find_conflicts(conn, suspects, _reading):
            logger.warning("%s: %s", origin(message), reason)
            found.append(rejected_row(message, reason, robot_id=reading.robot_id))
        return found


def _without_refused(pairs: list[tuple], refused: dict[str, str], rejected: list[dict]) -> list[tuple]:
    """The (record, message) pairs whose robot the roster took on; the others added to ``rejected``."""
    kept = []
    for record, message in pairs:
        if reason := refused.get(record.robot_id):
            rejected.append(rejected_row(message, reason, robot_id=record.robot_id))
        else:
            kept.append((record, message))
    return kept


def _reading(pair: tuple[ReadingValues, Message]) -> ReadingValues:
    return pair[0]


def _reading_key(pair: tuple[ReadingValues, Message]) -> tuple[str, datetime]:
    return pair[0].robot_id, pair[0].ts
