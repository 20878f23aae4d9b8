"""The policy for sane readings (common.wire.schemas): strict shapes, plausible values, bounded robot ids, and the
same verdict on every path a reading comes in by (the topic, a controller export, `score`)."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select

from common.csvio.controller_csv import CsvOptions, read_export
from common.errors import SchemaError
from common.service import OneLineFormatter
from common.settings import CommonSettings
from common.store.tables import readings_fact, rejected_readings
from common.wire.bus import Message
from common.wire.schemas import (
    DEFAULT_POLICY,
    MIN_NONZERO_AMPS,
    RAW_EXCERPT_CHARS,
    AlertState,
    DeadLetter,
    Reading,
    ReadingPolicy,
    RobotRoster,
)
from consumer_alerts.engine import DetectorEngine
from consumer_alerts.service import Intake, events_per_reading
from consumer_db.axislock import AxisLock
from consumer_db.migrate import migrate
from consumer_db.sink import Sink
from tests.fuzz_messages import TOPICS, key_of

NOW = datetime(2026, 1, 10, 12, tzinfo=UTC)


def wire(
    robot_id: object = "robot-001", ts: object = "2026-01-10T11:59:58Z", currents: object = None, **extra
) -> bytes:
    message = {"schema_version": 1, "robot_id": robot_id, "ts": ts, "currents": currents or {"1": 5.0}} | extra
    return json.dumps(message, allow_nan=True).encode()


HOSTILE = {
    "a huge current": (wire(currents={"1": 1e308}), "READING_MAX_ABS_AMPS"),
    "a negative huge current": (wire(currents={"2": -1500}), "READING_MAX_ABS_AMPS"),
    "a current no instrument measures": (wire(currents={"1": 5.0, "2": 1e-200}), "smallest current taken"),
    "a subnormal current": (wire(currents={"3": -5e-324}), "smallest current taken"),
    "NaN as a number": (wire(currents={"1": float("nan")}), "finite number"),
    "NaN as a text": (wire(currents={"1": "NaN"}), "valid number"),
    "an infinity": (
        b'{"schema_version":1,"robot_id":"r","ts":"2026-01-10T11:00:00Z","currents":{"1":1e999}}',
        "finite",
    ),
    "a current as a text": (wire(currents={"1": "12.5"}), "valid number"),
    "a current as a boolean": (wire(currents={"1": True}), "valid number"),
    "an integer epoch": (wire(ts=1768046398), "ISO-8601"),
    "an epoch as a text": (wire(ts="1768046398"), "ISO-8601"),
    "the year 1": (wire(ts="0001-01-01T00:00:00Z"), "READING_EARLIEST"),
    "the year 2100": (wire(ts="2100-01-01T00:00:00Z"), "ahead of this receiver's clock"),
    "axis 1 twice": (
        b'{"schema_version":1,"robot_id":"r","ts":"2026-01-10T11:00:00Z","currents":{"1":5,"1":7}}',
        "twice",
    ),
    "axis 1 as 1 and 01": (wire(currents={"1": 5, "01": 7}), "twice"),
    # int(), and pydantic with it, read "1_0" as axis 10 and these as axis 1
    "axis 1_0": (wire(currents={"1_0": 5.0}), "axis key '1_0' is not an integer in plain digits 0-9"),
    "axis 1_0 beside 10": (wire(currents={"10": 5.0, "1_0": 7.0}), "axis key '1_0' is not"),
    "axis +1": (wire(currents={"+1": 5.0}), "is not an integer in plain digits"),
    "axis 1 with a space": (wire(currents={" 1": 5.0}), "axis key ' 1' is not"),
    "axis 1.0": (wire(currents={"1.0": 5.0}), "axis key '1.0' is not"),
    "axis 1 in Arabic-Indic": (wire(currents={"\u0661": 5.0}), "is not an integer in plain digits"),
    "a key repeated with a space": (
        b'{"schema_version":1,"robot_id":"r","ts":"2026-01-10T11:00:00Z","currents":{"1":5, "1" :7}}',
        "twice",
    ),
    "a blank robot id": (wire(robot_id=" "), "ROBOT_ID_PATTERN"),
    "an empty robot id": (wire(robot_id=""), "robot_id"),
    "a zero-width space in the robot id": (wire(robot_id="robot-001\u200b"), "ROBOT_ID_PATTERN"),
    "a newline in the robot id": (wire(robot_id="r1\nERROR forged line"), "ROBOT_ID_PATTERN"),
    "a robot id that is a number": (wire(robot_id=7), "valid string"),
    "schema_version true": (wire(schema_version=True), "schema_version"),
    "a row number as a text": (wire(row="3"), "row"),
    # an axis no robot has: axis 0 is where the robot-level detectors keep their state (consumer_alerts failed on
    # it), and a message of many made-up axes cost consumer_alerts a state and detectors for each (~1 GB)
    "axis 0": (wire(currents={"0": 5.0}), "axis '0' is not an axis number from 1 to 62"),
    "a negative axis": (wire(currents={"1": 5.0, "-3": 1.0}), "axis '-3' is not"),
    "an axis past the rollup's 62": (wire(currents={"63": None}), "axis '63' is not"),
    "an axis of ten digits": (wire(currents={"9999999999": 5.0}), "axis '9999999999' is not"),
    "thousands of axes": (wire(currents={str(a): 1.0 for a in range(1, 5001)}), "axis '63' is not"),
}


@pytest.mark.parametrize("space", [" ", "\t", "\n", "\r"], ids=["space", "tab", "newline", "return"])
def test_a_key_repeated_behind_any_json_white_space_is_refused(space):
    raw = '{"schema_version":1,"robot_id":"r","ts":"2026-01-10T11:00:00Z","currents":{"1":5,"1"' + space + ":7}}"
    with pytest.raises(SchemaError, match="twice"):
        DEFAULT_POLICY.read(raw.encode(), now=NOW)


@pytest.mark.parametrize("raw, reason", HOSTILE.values(), ids=HOSTILE.keys())
def test_every_hostile_reading_is_refused_with_its_reason(raw, reason):
    with pytest.raises(SchemaError, match=reason.replace("(", r"\(")):
        DEFAULT_POLICY.read(raw, now=NOW)


@pytest.mark.parametrize("raw", [raw for raw, _ in HOSTILE.values()], ids=HOSTILE.keys())
def test_the_fast_path_never_accepts_what_the_careful_one_refuses(raw):
    try:
        careful = Reading.from_bytes_checked(raw)
    except SchemaError:
        careful = None
    try:
        fast = Reading.from_bytes(raw)
    except SchemaError:
        fast = None
    assert fast == careful


def test_a_plain_reading_passes_unchanged():
    reading = DEFAULT_POLICY.read(wire(currents={"1": 12, "2": None, "14": -3.5}), now=NOW)
    assert reading.currents == {1: 12.0, 2: None, 14: -3.5}
    assert reading.ts == datetime(2026, 1, 10, 11, 59, 58, tzinfo=UTC)


def test_zero_and_the_smallest_current_taken_pass():
    currents = {"1": 0.0, "2": -0.0, "3": MIN_NONZERO_AMPS, "4": -MIN_NONZERO_AMPS, "5": 1e-17}
    reading = DEFAULT_POLICY.read(wire(currents=currents), now=NOW)
    assert reading.currents == {1: 0.0, 2: 0.0, 3: MIN_NONZERO_AMPS, 4: -MIN_NONZERO_AMPS, 5: 1e-17}


def test_old_offline_data_passes_with_the_defaults():
    # NAB's files are dated 2013-2015, the real export 2022.
    assert DEFAULT_POLICY.read(wire(ts="2013-07-04T00:00:00Z"), now=NOW).ts.year == 2013


def test_the_settings_make_the_policy(monkeypatch):
    monkeypatch.setenv("READING_MAX_ABS_AMPS", "50")
    monkeypatch.setenv("READING_MAX_FUTURE_S", "60")
    monkeypatch.setenv("READING_EARLIEST", "2020-01-01T00:00:00Z")
    monkeypatch.setenv("ROBOT_ID_PATTERN", "R[0-9]+")
    monkeypatch.setenv("ROBOT_IDS_ALLOWED", "R1, R2")
    monkeypatch.setenv("MAX_ROBOTS", "2")
    policy = CommonSettings(_env_file=None).reading_policy()
    assert policy.read(wire(robot_id="R1", currents={"1": 49.5}), now=NOW).robot_id == "R1"
    refused = {
        "beyond READING_MAX_ABS_AMPS 50": wire(robot_id="R1", currents={"1": 50.5}),
        "ahead of this receiver's clock": wire(robot_id="R1", ts=(NOW + timedelta(seconds=61)).isoformat()),
        "before READING_EARLIEST": wire(robot_id="R1", ts="2019-12-31T23:59:59Z"),
        "does not match ROBOT_ID_PATTERN": wire(robot_id="robot-001"),
        "not in ROBOT_IDS_ALLOWED": wire(robot_id="R3"),
    }
    for reason, raw in refused.items():
        with pytest.raises(SchemaError, match=reason):
            policy.read(raw, now=NOW)
    assert policy.max_robots == 2


@pytest.mark.parametrize("ahead", ["inf", "1e300", str(101 * 365 * 86_400)])
def test_a_reading_max_future_past_a_century_is_refused_at_start(monkeypatch, ahead):
    # Infinity and 1e300 passed, and every service stopped at its first reading (timedelta overflowed).
    monkeypatch.setenv("READING_MAX_FUTURE_S", ahead)
    with pytest.raises(ValueError, match="reading_max_future_s"):
        CommonSettings(_env_file=None)
    monkeypatch.setenv("READING_MAX_FUTURE_S", str(99 * 365 * 86_400))
    far = CommonSettings(_env_file=None).reading_policy()
    assert far.read(wire(ts=(NOW + timedelta(days=98 * 365)).isoformat()), now=NOW).robot_id


def test_a_bad_robot_id_pattern_fails_at_start():
    with pytest.raises(ValueError):
        ReadingPolicy(robot_id_pattern="[unclosed")


def test_new_robots_are_bounded_and_reported(caplog):
    roster = RobotRoster(ReadingPolicy(max_robots=2), ["A"], service="test")
    with caplog.at_level(logging.INFO, logger="common.wire.schemas"):
        assert roster.admit("A") is None
        assert roster.admit("B\nforged") is None
        refused = roster.admit("C")
    assert refused is not None and "MAX_ROBOTS" in refused and "'C'" in refused
    assert roster.known == {"A", "B\nforged"}
    assert "new robot id 'B\\nforged'" in caplog.text  # escaped: one log line, not two


def test_a_dead_letter_keeps_a_bounded_excerpt():
    letter = DeadLetter(source="t", raw="x" * 900_000, reason="too big")
    assert len(letter.raw) < RAW_EXCERPT_CHARS + 100
    assert letter.raw.endswith("[cut: 900000 characters in all]")


def test_a_controller_export_gets_the_same_policy(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "Trait,Axis #1,Axis #2,Time\n"
        "current,1.5,2.5,2022-10-17T12:00:00Z\n"
        "current,1e308,2.5,2022-10-17T12:00:02Z\n"
        "current,1.5,2.5,2099-10-17T12:00:04Z\n"
        "current,1.5,2.5,2022-10-17T12:00:06Z\n"
    )
    items = list(read_export(path, CsvOptions("R1", [1, 2])))
    assert [type(i).__name__ for i in items] == ["Reading", "DeadLetter", "DeadLetter", "Reading"]
    assert "READING_MAX_ABS_AMPS" in items[1].reason and "ahead of" in items[2].reason
    strict = CsvOptions("R1", [1, 2], policy=ReadingPolicy(max_abs_amps=2.0))
    assert all(isinstance(i, DeadLetter) for i in read_export(path, strict))


def test_a_tiny_current_between_the_extremes_of_an_export_is_refused(tmp_path):
    """An export is read a block of lines at a time, the policy asked of the block's extremes: the smallest
    nonzero |current| is one of them, or 1e-200 between -3 and 5 would pass unseen."""
    path = tmp_path / "export.csv"
    rows = [(-3.0, 0.0), (1e-200, 2.5), (5.0, 0.0), (1.5, -1e-300), (1.5, 2.5)]
    path.write_text(
        "Trait,Axis #1,Axis #2,Time\n"
        + "".join(f"current,{a!r},{b!r},2022-10-17T12:00:{2 * i:02d}Z\n" for i, (a, b) in enumerate(rows))
    )
    items = list(read_export(path, CsvOptions("R1", [1, 2])))
    assert [type(i).__name__ for i in items] == ["Reading", "DeadLetter", "Reading", "DeadLetter", "Reading"]
    assert "axis 1: current 1e-200 A" in items[1].reason and "axis 2: current -1e-300 A" in items[3].reason


def message(offset: int, raw: bytes, topic: str = TOPICS.readings) -> Message:
    return Message(topic, 0, offset, key_of(raw), raw, 1_768_000_000_000)


def test_consumer_alerts_dead_letters_a_reading_the_engine_fails_on_and_goes_on(monkeypatch):
    engine = DetectorEngine()
    original = engine.process

    def fragile(reading, place=None, record_ts=None):
        if reading.currents.get(1) == 13.0:
            raise OverflowError("(34, 'Numerical result out of range')")
        return original(reading, place, record_ts)

    monkeypatch.setattr(engine, "process", fragile)
    batch = [message(i, wire(ts=f"2026-01-10T11:00:{2 * i:02d}Z", currents={"1": 10.0 + i})) for i in range(6)]
    out = list(events_per_reading(engine, batch))
    letters = [o for o in out if isinstance(o, DeadLetter)]
    assert len(out) == 6 and len(letters) == 1
    assert letters[0].line == 3 and "OverflowError" in letters[0].reason and letters[0].robot_id == "robot-001"
    assert engine.robots["robot-001"].last_ts == datetime(2026, 1, 10, 11, 0, 10, tzinfo=UTC).timestamp()


def test_consumer_alerts_refuses_robots_past_the_cap():
    policy = ReadingPolicy(max_robots=1)
    intake = Intake(policy, RobotRoster(policy), "dead")
    batch = [message(0, wire(robot_id="A")), message(1, wire(robot_id="B"))]
    out = list(events_per_reading(DetectorEngine(), batch, intake=intake))
    assert out[0] == [] and isinstance(out[1], DeadLetter) and "MAX_ROBOTS" in out[1].reason


def test_the_sink_rejects_hostile_readings_and_robots_past_the_cap(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'sink.sqlite'}")
    migrate(engine)
    policy = ReadingPolicy(max_robots=2)
    sink = Sink(engine, AxisLock(engine, [1, 2]), TOPICS, policy=policy)
    now = datetime.now(UTC).replace(microsecond=0)
    good = [message(i, wire(robot_id=f"R{i}", ts=now.isoformat(), currents={"1": 1.0})) for i in range(3)]
    bad = [message(10 + i, raw) for i, (raw, _) in enumerate(HOSTILE.values())]
    report = sink.write(good + bad)
    assert report.readings == 2 and report.rejected == 1 + len(HOSTILE)
    with engine.connect() as conn:
        stored = set(conn.execute(select(readings_fact.c.robot_id)).scalars())
        reasons = dict(conn.execute(select(rejected_readings.c.line, rejected_readings.c.reason)).all())
    assert stored == {"R0", "R1"}
    assert "MAX_ROBOTS" in reasons[2]
    assert all(reasons[10 + i] for i in range(len(HOSTILE)))
    engine.dispose()


def test_a_second_reading_of_the_same_robot_and_time_is_a_conflict_record_with_both_values(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'sink.sqlite'}")
    migrate(engine)
    sink = Sink(engine, AxisLock(engine, [1, 2]), TOPICS)
    ts = datetime.now(UTC).replace(microsecond=123000).isoformat()
    first = message(1, wire(ts=ts, currents={"1": 5.0, "2": 1.0}))
    again = message(2, wire(ts=ts, currents={"1": 5.0, "2": 1.0}))  # the same values: a harmless repeat
    other = message(3, wire(ts=ts, currents={"1": 7.0, "2": 1.0}))
    assert sink.write([first]).readings == 1
    report = sink.write([again, other])
    assert (report.readings, report.conflicts, report.rejected) == (1, 1, 1)
    in_one_batch = [
        message(4, wire(ts="2026-01-01T00:00:00Z")),
        message(5, wire(ts="2026-01-01T00:00:00Z", currents={"1": 6.0})),
    ]
    assert sink.write(in_one_batch).conflicts == 1
    with engine.connect() as conn:
        amps = conn.execute(select(readings_fact.c.amps).where(readings_fact.c.axis_id == 1)).scalars().all()
        conflicts = dict(conn.execute(select(rejected_readings.c.line, rejected_readings.c.reason)).all())
    assert sorted(amps) == [5.0, 5.0]
    assert set(conflicts) == {3, 5}
    assert "axis 1: stored 5.0, this one 7.0" in conflicts[3] and conflicts[3].startswith("conflict")
    assert sink.write([other]).conflicts == 1  # a redelivery of the conflict is stored once (same origin)
    with engine.connect() as conn:
        assert len(conn.execute(select(rejected_readings.c.id)).all()) == 2
    engine.dispose()


def test_a_robot_id_with_a_newline_cannot_forge_a_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        engine = create_engine(f"sqlite:///{tmp_path / 'sink.sqlite'}")
        migrate(engine)
        permissive = ReadingPolicy(robot_id_pattern=r"(?s).+")  # a deployment that lets anything through
        sink = Sink(engine, AxisLock(engine, [1]), TOPICS, policy=permissive)
        forged = "r1\nERROR consumer_db.sink: database wiped\u2028"
        assert sink.write([message(1, wire(robot_id=forged, ts="2026-01-01T00:00:00Z"))]).readings == 1
        logging.getLogger("x").error("boom", exc_info=ValueError("a\nb"))
        engine.dispose()
    finally:
        root.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert not any(line.startswith("ERROR consumer_db.sink") for line in lines)
    assert any("'r1\\nERROR consumer_db.sink: database wiped\\u2028'" in line for line in lines)
    assert "ValueError: a\nb" in out.getvalue()  # a traceback keeps its lines


class FakeDriverError(Exception):
    def __init__(self, pgcode):
        super().__init__(f"SQLSTATE {pgcode}")
        self.pgcode = pgcode


@pytest.mark.parametrize(
    "code, transient",
    [
        ("25006", True),
        ("40P01", True),
        ("57P01", True),
        ("08006", True),
        ("53300", True),
        ("42501", False),
        ("42P01", False),
    ],
)
def test_database_errors_are_told_transient_or_persistent(code, transient):
    from sqlalchemy.exc import InternalError, ProgrammingError

    from consumer_db.retry import is_transient

    kind = ProgrammingError if code.startswith("42") else InternalError
    assert is_transient(kind("INSERT ...", {}, FakeDriverError(code))) is transient


def database_error(kind: str, code: str | None):
    from sqlalchemy import exc

    return getattr(exc, kind)("INSERT ...", {}, FakeDriverError(code) if code else Exception("closed"))


@pytest.mark.parametrize(
    "error, content",
    [
        (("DataError", "22003"), True),  # a number out of the column's range
        (("DataError", "22P05"), True),  # a character the database's encoding has not
        (("IntegrityError", "23514"), True),  # a CHECK constraint
        (("IntegrityError", "23502"), True),  # NULL where none may be
        (("OperationalError", "54000"), True),  # an index row too big for its index
        (("IntegrityError", "23505"), False),  # a duplicate key: stored by another transaction meanwhile
        (("InternalError", "25006"), False),  # read-only
        (("OperationalError", "40001"), False),  # serialization failure
        (("OperationalError", "55P03"), False),  # lock not available
        (("OperationalError", "57P01"), False),  # shutting down
        (("ProgrammingError", "42501"), False),  # permission denied: an operator's to cure
        (("OperationalError", None), False),  # connection lost: no SQLSTATE
        (("IntegrityError", None), True),  # SQLite has no SQLSTATE
    ],
    ids=lambda e: "-".join(map(str, e)) if isinstance(e, tuple) else str(e),
)
def test_database_errors_are_told_content_or_the_database_state(error, content):
    from consumer_db.retry import is_content_error

    assert is_content_error(database_error(*error)) is content


def test_a_value_refused_before_the_database_sees_it_is_content():
    """Wrapped by SQLAlchemy (a column type's conversion failed) or raised by the driver itself."""
    from sqlalchemy.exc import StatementError

    from consumer_db.retry import is_content_error

    conversion = StatementError("naive datetime", "INSERT ...", {}, ValueError("naive datetime"))
    assert is_content_error(conversion)
    assert is_content_error(ValueError("A string literal cannot contain NUL (0x00) characters."))
    assert not is_content_error(RuntimeError("a bug"))


async def test_the_retry_recycles_connections_after_each_failure_and_says_which_kind(caplog):
    import asyncio

    from sqlalchemy.exc import ProgrammingError

    from consumer_db.retry import retry

    calls, recycled = [], []

    def refused_twice():
        calls.append(1)
        if len(calls) <= 2:
            raise ProgrammingError("INSERT ...", {}, FakeDriverError("42501"))
        return "done"

    with caplog.at_level(logging.INFO, logger="consumer_db.retry"):
        got = await retry(
            refused_twice, stop=asyncio.Event(), what="write", initial_s=0.01, recycle=lambda: recycled.append(1)
        )
    assert got == "done" and len(recycled) == 2
    assert caplog.text.count("persistent: an operator has to act") == 2 and "database is back" in caplog.text


def test_a_robot_poisoned_before_migration_0007_is_cured_and_no_absurd_value_can_be_stored_again(tmp_path):
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from common.store import queries
    from common.store.tables import seed_axes
    from consumer_db.store import insert_readings

    engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    migrate(engine, "0006")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(readings_fact), [{"robot_id": "R1", "axis_id": 1, "ts": t0, "amps": 1e308}])
    migrate(engine)
    with engine.begin() as conn:
        assert conn.execute(select(readings_fact.c.amps)).scalars().all() == []
        moved = conn.execute(select(rejected_readings.c.reason, rejected_readings.c.raw)).one()
        assert "migration 0007" in moved.reason and "R1" in moved.raw
        seed_axes(conn, robot_ids=["R1"], axes=[1])
        insert_readings(conn, [("R1", 1, t0 + timedelta(minutes=2 * i), 5.0 + i) for i in range(3)])
        assert [r["rows"] for r in queries.axis_summary(conn, robot_id="R1")] == [3]
    for absurd in (1e308, -2e6):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(readings_fact), [{"robot_id": "R1", "axis_id": 1, "ts": t0, "amps": absurd}])
    engine.dispose()


class FragilePolicy(ReadingPolicy):
    """A policy with a bug that one message provokes, in the check every way of reading goes through."""

    def problem(self, robot_id, ts, currents, **kw):
        if 13.0 in currents.values():
            raise RuntimeError("a bug met one message")
        return super().problem(robot_id, ts, currents, **kw)


def test_the_sink_dead_letters_a_message_it_fails_on_for_any_reason_and_goes_on(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'sink.sqlite'}")
    migrate(engine)
    sink = Sink(engine, AxisLock(engine, [1, 2]), TOPICS, policy=FragilePolicy())
    batch = [message(i, wire(ts=f"2026-01-10T11:00:{2 * i:02d}Z", currents={"1": 10.0 + i})) for i in range(6)]
    report = sink.write(batch)
    assert (report.readings, report.rejected) == (5, 1)
    with engine.connect() as conn:
        rejected = conn.execute(select(rejected_readings.c.line, rejected_readings.c.reason)).one()
    assert rejected == (3, "could not be read: RuntimeError: a bug met one message")
    engine.dispose()


class FragileEngine(DetectorEngine):
    """An engine with a bug that one reading provokes (as 1e308 once did in RollingWindow.push)."""

    def process(self, reading, place=None, record_ts=None):
        if reading.currents.get(1) == 13.0:
            raise OverflowError("(34, 'Numerical result out of range')")
        return super().process(reading, place, record_ts)


async def test_consumer_alerts_run_publishes_the_dead_letter_and_keeps_judging(tmp_path):
    import asyncio

    from common.wire.bus import InProcessBus
    from consumer_alerts.engine import EngineConfig
    from consumer_alerts.service import run
    from consumer_alerts.settings import AlertsSettings

    settings = AlertsSettings(
        _env_file=None,
        bus="memory",
        readings_topic="readings",
        alerts_topic="alerts",
        dead_letter_topic="dead",
        state_path=tmp_path / "state.json",
        poll_timeout_ms=20,
        snapshot_interval_s=0.05,
    )
    engine = FragileEngine(EngineConfig(detectors=("zscore",), z_window=20, z_min_samples=10, z_test_samples=1))
    bus, stop = InProcessBus(), asyncio.Event()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i in range(40):
        amps = 13.0 if i == 3 else (40.0 if i >= 35 else 10 + (i % 7) * 0.1)
        raw = wire(ts=(base + timedelta(seconds=2 * i)).isoformat(), currents={"1": amps})
        await bus.publish("readings", "robot-001", raw)
    task = asyncio.create_task(run(settings, bus=bus, stop=stop, engine=engine))
    async with asyncio.timeout(20):
        while not [m for log in bus._log("alerts") for m in log]:
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 10)
    letters = [DeadLetter.from_bytes(m.value) for log in bus._log("dead") for m in log]
    assert len(letters) == 1 and letters[0].line == 3 and "OverflowError" in letters[0].reason
    assert letters[0].source == "readings/0 (consumer_alerts)"


# Inputs msgspec, the fast path of ``ReadingPolicy.read_values``, reads otherwise than pydantic's ``Reading``
# does (docs/benchmarks.md, issue 23): each must get ``read``'s verdict, and its reason when refused.
def plain(ts: str = "2026-01-10T11:59:58Z", currents: str = '"1":5.0', **fields: str) -> bytes:
    head = "".join(f'"{name}":{value},' for name, value in fields.items())
    return f'{{{head}"schema_version":1,"robot_id":"robot-001","ts":"{ts}","currents":{{{currents}}}}}'.encode()


READ_OTHERWISE = {
    "a lower-case t": plain(ts="2026-01-10t11:59:58Z"),
    "a lower-case z": plain(ts="2026-01-10T11:59:58z"),
    "a seventh digit of a second": plain(ts="2026-01-10T11:59:58.1234567Z"),
    "a space for the T": plain(ts="2026-01-10 11:59:58Z"),
    "no seconds": plain(ts="2026-01-10T11:59Z"),
    "hour 24": plain(ts="2026-01-10T24:00:00Z"),
    "second 60": plain(ts="2025-12-31T23:59:60Z"),
    "February 30": plain(ts="2024-02-30T00:00:00Z"),
    "an offset of 24 h": plain(ts="2026-01-10T11:59:58+24:00"),
    "an offset of 23:59": plain(ts="2026-01-10T11:59:58+23:59"),
    "an offset minute of 60": plain(ts="2026-01-10T11:59:58+00:60"),  # datetime reads +01:00
    "a time past the last UTC one": plain(ts="9999-12-31T23:00:00-05:00"),
    "an Arabic-Indic digit in the time": plain(ts="2026-01-10T11:59:5\u0661Z"),
    "a time written with an escape": plain(ts="2026-01-10\\u005411:59:58Z"),
    "the last of a repeated key": plain(currents='"1":5.0,"1":700.0'),
    "a repeated top-level key": plain(robot_id='"robot-002"'),
    "axis 01": plain(currents='"01":5.0'),
    "axis +1": plain(currents='"+1":5.0'),
    "axis 1_0": plain(currents='"1_0":5.0'),
    "axis -0 and 0": plain(currents='"-0":5.0,"0":6.0'),
    "an integer current": plain(currents='"1":5'),
    "a current past the largest double": plain(currents='"1":1e999'),
    "an integer current past the largest double": plain(currents='"1":' + "9" * 400),
    "a lone surrogate": plain(currents='"1":5.0', row='"\\ud800"'),
    "a row number past 64 bits": plain(row=str(2**70)),
    "a row number 1.0": plain(row="1.0"),
    "a version 1.0": plain(schema_version="1.0"),
    "an unknown key": plain(extra="1"),
    "not UTF-8": plain().replace(b"robot-001", b"robot-\xff01"),
}


def verdict(read, raw: bytes, policy: ReadingPolicy = DEFAULT_POLICY):
    try:
        got = read(raw, now=NOW)
    except SchemaError as exc:
        return "refused", str(exc)
    return got.robot_id, got.ts, got.row, got.currents, [type(v) for v in got.currents.values()]


def values_and_read_agree(raw: bytes, policy: ReadingPolicy = DEFAULT_POLICY) -> None:
    assert verdict(policy.read_values, raw, policy) == verdict(policy.read, raw, policy)


@pytest.mark.parametrize(
    "raw", list(READ_OTHERWISE.values()) + [raw for raw, _ in HOSTILE.values()], ids=[*READ_OTHERWISE, *HOSTILE]
)
def test_read_values_gives_reads_verdict_and_reason(raw):
    values_and_read_agree(raw)
    values_and_read_agree(raw, ANY_TIME)


def test_a_plain_reading_is_read_without_pydantic(monkeypatch):
    def no_pydantic(*args, **kwargs):
        raise AssertionError("went the slow way")

    monkeypatch.setattr(ReadingPolicy, "read", no_pydantic)
    raw = plain(ts="2026-01-10T11:59:58.125+01:00", currents='"1":5.0,"2":null,"14":-3', row="7")
    values = DEFAULT_POLICY.read_values(raw, now=NOW)
    assert values == (
        "robot-001",
        datetime(2026, 1, 10, 10, 59, 58, 125000, tzinfo=UTC),
        7,
        {1: 5.0, 2: None, 14: -3.0},
    )


@st.composite
def near_iso_times(draw) -> str:
    """Times as ISO-8601 writes them and near misses: each part at or just past its range, any separator,
    fractions of up to 8 digits, zones in either case or as offsets up to 24 h."""
    year, month, day = draw(st.integers(0, 9999)), draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute = draw(st.integers(0, 25)), draw(st.integers(0, 61))
    seconds = draw(st.sampled_from(["", ":00", ":59", ":60"]))
    fraction = draw(st.sampled_from(["", "."])) + draw(st.text("0123456789", max_size=8))
    sign, off_hours, off_minutes = draw(st.sampled_from("+-")), draw(st.integers(0, 25)), draw(st.integers(0, 61))
    zone = draw(st.sampled_from(["", "Z", "z", f"{sign}{off_hours:02d}:{off_minutes:02d}"]))
    date = f"{year:04d}-{month:02d}-{day:02d}"
    clock = f"{hour:02d}:{minute:02d}{seconds}{fraction}{zone}"
    return date + draw(st.sampled_from("Tt ")) + clock


# Any time the calendar holds, so that the times' parse itself is compared, not the policy's dates.
ANY_TIME = ReadingPolicy(earliest=datetime(1, 1, 1, tzinfo=UTC), max_future_s=1e12)


@settings(max_examples=300, deadline=None)
@given(ts=near_iso_times())
def test_read_values_agrees_with_read_on_near_iso_times(ts):
    values_and_read_agree(plain(ts=ts), ANY_TIME)


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.from_regex(r"[+-]?[0-9_ ]{1,3}", fullmatch=True), min_size=1, max_size=3),
    amps=st.floats(-2000, 2000) | st.integers(-2000, 2000) | st.integers() | st.booleans() | st.none(),
)
def test_read_values_agrees_with_read_on_odd_axes_and_currents(keys, amps):
    values_and_read_agree(plain(currents=",".join(f"{json.dumps(key)}:{json.dumps(amps)}" for key in keys)))


@pytest.mark.parametrize("ahead_at", [0, 20], ids=["first reading", "mid-stream"])
def test_a_reading_a_day_ahead_does_not_blind_its_robot(ahead_at):
    start = datetime.now(UTC) - timedelta(hours=1)
    fault_start = start + timedelta(seconds=2 * 350)

    def opened_in_the_fault(ahead: bool) -> set[str]:
        engine = DetectorEngine()
        out = []
        for i in range(400):
            if ahead and i == ahead_at:  # 23 h ahead: inside READING_MAX_FUTURE_S, so it passes the policy
                leap = Reading(robot_id="R", ts=datetime.now(UTC) + timedelta(hours=23), currents={1: 10.0})
                out += engine.process(DEFAULT_POLICY.check(leap))
            amps = 40.0 if i >= 350 else 10 + (i % 7) * 0.1  # a fault at the end
            out += engine.process(Reading(robot_id="R", ts=start + timedelta(seconds=2 * i), currents={1: amps}))
        return {a.detector for a in out if a.state is AlertState.OPEN and a.opened_at >= fault_start}

    assert opened_in_the_fault(ahead=False)
    # the one reading from ahead is judged too (a robot-level detector may judge other rows after it), but the
    # fault after it is raised by the axis's own detectors as without it
    assert opened_in_the_fault(ahead=True) - {"multivariate"} == opened_in_the_fault(ahead=False) - {"multivariate"}


def test_a_redelivery_after_a_reading_from_ahead_is_still_skipped():
    engine = DetectorEngine()
    start = datetime.now(UTC) - timedelta(hours=1)
    stream = [Reading(robot_id="R", ts=start + timedelta(seconds=2 * i), currents={1: 10.0}) for i in range(400)]
    for reading in stream:
        engine.process(reading)
    engine.process(Reading(robot_id="R", ts=datetime.now(UTC) + timedelta(hours=23), currents={1: 10.0}))
    # the readings before it again (a restart re-reading its batch): older than the one before the leap too
    faulty = [r.model_copy(update={"currents": {1: 40.0}}) for r in stream]
    assert all(engine.process(r) == [] for r in faulty)
    assert engine.robots["R"].last_ts > datetime.now(UTC).timestamp()
