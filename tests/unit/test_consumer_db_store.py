"""The sink's writes: idempotent readings and dead letters, alert upsert rules, the schema lock per reading."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from common.store.tables import alerts, readings_fact, rejected_readings
from common.wire.bus import Message
from common.wire.schemas import Alert, DeadLetter, Reading, ReadingValues
from consumer_db.alert_store import upsert_alerts
from consumer_db.axislock import AxisLock, Rejected, RobotAxes
from consumer_db.decode import Topics, decode
from consumer_db.store import (
    copy_text,
    insert_readings,
    insert_rejected,
    long_rows,
    wide_block_text,
    wide_copy_text,
    wide_rows,
)
from tests.fuzz_messages import key_of
from tests.phrase_fixture import migrated_sqlite  # noqa: F401 - a fixture

T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)
TOPICS = Topics("readings", "alerts", "dead")


@pytest.fixture
def engine(migrated_sqlite):
    return migrated_sqlite


def alert(**changes) -> Alert:
    base = dict(
        event_id="e1",
        robot_id="r",
        axis=2,
        detector="zscore",
        severity="ALERT",
        state="open",
        opened_at=T0,
        peak_amps=5.0,
        threshold=4.0,
        score=3.0,
    )
    return Alert(**{**base, **changes})


# open -> acknowledged -> escalated with a lower peak and no ack -> closed, de-escalated
HISTORY = [
    alert(),
    alert(acknowledged_by="ana", acknowledged_at=T0 + timedelta(minutes=1)),
    alert(severity="ERROR", peak_amps=3.0, score=6.0),
    alert(state="closed", closed_at=T0 + timedelta(minutes=5), peak_amps=4.0, score=1.0),
]
FINAL = {
    "severity": "ERROR",
    "state": "closed",
    "closed_at": T0 + timedelta(minutes=5),
    "peak_amps": 5.0,
    "score": 1.0,
    "acknowledged_by": "ana",
    "acknowledged_at": T0 + timedelta(minutes=1),
    "opened_at": T0,
}


def stored_alert(engine) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(alerts)).mappings().one()
    return {k: row[k] for k in FINAL}


def test_alert_messages_one_per_transaction_follow_the_rules(engine):
    for event in HISTORY:
        with engine.begin() as conn:
            upsert_alerts(conn, [event])
    assert stored_alert(engine) == FINAL


def test_alert_messages_in_one_batch_give_the_same_result(engine):
    with engine.begin() as conn:
        assert upsert_alerts(conn, HISTORY) == 1
    assert stored_alert(engine) == FINAL


def test_a_newer_acknowledgement_replaces_the_older_one():
    new = HISTORY[1].merged_with(HISTORY[1].model_copy(update={"acknowledged_by": "bo"}))
    assert new.acknowledged_by == "bo"


def test_readings_and_dead_letters_are_stored_once(engine):
    rows = [
        ("r", axis, T0 + timedelta(seconds=2 * i), float(i) if axis == 1 else None) for i in range(5) for axis in (1, 2)
    ]
    letter = {
        "source": "f.csv",
        "line": 3,
        "raw": "a\x00b",
        "reason": "bad",
        "robot_id": "r",
        "received_at": T0,
        "origin": "csv:r:f.csv:3",
    }
    for expected_new in (10, 0):
        with engine.begin() as conn:
            assert insert_readings(conn, rows) == expected_new
            insert_rejected(conn, [letter])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(readings_fact)).scalar() == 10
        assert conn.execute(select(rejected_readings.c.raw)).scalars().all() == ["a\\x00b"]


def test_robot_axes_rows_and_refusals():
    lock = RobotAxes(frozenset({1, 2, 3, 4}), (1, 2, 3))  # axis 4 retired
    assert lock.rows("r", T0, {1: 1.0, 3: None}) == [("r", 1, T0, 1.0), ("r", 2, T0, None), ("r", 3, T0, None)]
    assert lock.rows("r", T0, {4: 2.0})[-1] == ("r", 4, T0, 2.0)
    assert lock.rows("r", T0, {9: None}) == [
        ("r", a, T0, None) for a in (1, 2, 3)
    ]  # an unknown axis without value is nothing
    with pytest.raises(Rejected, match=r"axis 9 not in axes_dim for robot r \(schema lock: 1, 2, 3, 4\)"):
        lock.rows("r", T0, {1: 1.0, 9: 0.5})
    with pytest.raises(Rejected, match="not a finite number"):
        lock.rows("r", T0, {1: float("inf")})


def test_axis_lock_seeds_a_new_robot_once_and_caches(engine):
    clock = [0.0]
    lock = AxisLock(engine, [1, 2], refresh_s=60, clock=lambda: clock[0])
    assert lock.for_robots({"new"})["new"] == RobotAxes(frozenset({1, 2}), (1, 2))
    engine.dispose()
    lock.engine = None  # cached: no database needed for a known robot
    assert lock.for_robots({"new"})["new"].active == (1, 2)


def test_copy_text_escapes_and_gathers_each_reading_into_one_row():
    # axis 1 OK null, axis 3 with a value, axis 2 absent; then a second reading and a repeated axis
    rows = [("a\tb\\c", 1, T0, None), ("a\tb\\c", 3, T0, 1.25), ("a\tb\\c", 3, T0, 9.0), ("x", 2, T0, -0.5)]
    assert copy_text(rows) == (
        "a\\tb\\\\c\t2022-10-17T12:00:00Z\t10\t{null,null,1.25}\nx\t2022-10-17T12:00:00Z\t4\t{null,-0.5}\n"
    )


def read_copy_text(text: str) -> list[tuple]:
    """The ``(robot_id, ts, axes, amps)`` rows in COPY text as PostgreSQL reads the forms the writers use
    (a robot id as written, escapes and all): a float as the nearest double (``float``, as PostgreSQL's ``float8in``),
    ``NULL`` in any case as None, a time with its offset or ``Z``."""
    rows = []
    for line in text.splitlines():
        robot, ts, axes, array = line.split("\t")
        cells = array.removeprefix("{").removesuffix("}").split(",") if array != "{}" else []
        amps = [None if cell.upper() == "NULL" else float(cell) for cell in cells]
        rows.append((robot, datetime.fromisoformat(ts), int(axes), amps))
    return rows


def exactly(rows: list[tuple]) -> list[tuple]:
    """Rows with each float as its ``repr``: equal only when the doubles are (-0.0 is not 0.0)."""
    return [(r, ts, ts.utcoffset(), axes, [repr(v) for v in amps]) for r, ts, axes, amps in rows]


# Offsets of whole seconds (PostgreSQL reads no finer ones), not only whole minutes
FIXED_OFFSETS = st.integers(-23 * 3600, 23 * 3600).map(lambda s: timezone(timedelta(seconds=s)))


@settings(max_examples=300, deadline=None)
@given(
    amps=st.lists(st.none() | st.floats(allow_nan=False, allow_infinity=False), max_size=20),
    ts=st.datetimes(timezones=st.just(UTC) | FIXED_OFFSETS),
)
def test_copy_text_reads_back_as_the_very_values_given(amps, ts):
    """msgspec writes the times and currents (``wide_copy_text``): whatever the float (subnormal, -0.0, 1e16,
    1e-7, ...) or the time (any year, microseconds, any offset, seconds in it too), the text reads back as the
    same double and the same instant, as PostgreSQL reads it."""
    row = ("R1", ts, 1, amps)
    (robot, read_ts, axes, read_amps) = read_copy_text(wide_copy_text([row]))[0]
    assert (robot, read_ts, axes) == ("R1", ts, 1)
    assert [repr(v) for v in read_amps] == [repr(v) for v in amps]


def test_copy_text_keeps_what_is_not_finite_for_the_database_to_refuse():
    """msgspec would write NaN and infinity as null (a NULL stored in their place): they are written as
    ``repr`` writes them, so the table's CHECK refuses the batch as it always did. A naive time is refused."""
    text = wide_copy_text([("R1", T0, 0b1110, [1.0, float("nan"), None]), ("R1", T0, 0b10, [float("-inf")])])
    assert [line.split("\t")[3] for line in text.splitlines()] == ["{1.0,nan,NULL}", "{-inf}"]
    with pytest.raises(ValueError, match="naive"):
        wide_copy_text([("R1", T0.replace(tzinfo=None), 0b10, [1.0])])


def message(topic: str, value: bytes, offset: int = 0, key: bytes | None = None) -> Message:
    """Keyed by the value's robot id unless ``key`` is given, as the producer keys a reading."""
    return Message(topic, 0, offset, key_of(value, b"r") if key is None else key, value, 1666008000000)


def test_decode_routes_every_message_and_turns_garbage_into_rejections():
    reading = Reading(robot_id="r", ts=T0, currents={1: 1.0})
    letter = DeadLetter(source="f.csv", line=7, raw="x", reason="bad row", robot_id="r")
    batch = decode(
        [
            message("readings", reading.to_bytes(), 0),
            message("readings", b"\xff{", 1),
            message("alerts", alert().to_bytes(), 2),
            message("alerts", b'{"schema_version": 2}', 3),
            message("dead", letter.to_bytes(), 4),
            message("elsewhere", b"x", 5),
        ],
        TOPICS,
    )
    assert [r for r, _ in batch.readings] == [
        ReadingValues(reading.robot_id, reading.ts, reading.row, reading.currents)
    ]
    assert batch.alerts == [alert()]
    assert [(r["source"], r["line"], r["origin"]) for r in batch.rejected] == [
        ("readings", 1, "readings/0/1"),
        ("alerts", 3, "alerts/0/3"),
        ("f.csv", 7, "dead/0/4"),
        ("elsewhere", 5, "elsewhere/0/5"),
    ]
    assert "not JSON" in batch.rejected[0]["reason"] and "schema_version 2" in batch.rejected[1]["reason"]
    assert batch.rejected[0]["raw"] == "\ufffd{" and batch.rejected[0]["robot_id"] == "r"


def test_rows_of_readings_that_interleave_are_gathered_by_reading():
    t1 = T0 + timedelta(seconds=2)
    rows = [("a", 1, T0, 1.0), ("b", 1, T0, 2.0), ("a", 2, T0, 3.0), ("a", 1, t1, 4.0), ("b", 2, T0, 5.0)]
    rows.append(("a", 2, T0, 9.0))  # an axis given twice keeps its first value
    assert list(wide_rows(rows)) == [
        ("a", T0, 0b110, [1.0, 3.0]),
        ("b", T0, 0b110, [2.0, 5.0]),
        ("a", t1, 0b10, [4.0]),
    ]


@pytest.mark.parametrize(
    "known, active",
    [(range(1, 15), range(1, 15)), ({1, 3, 62}, {1, 3, 62}), ({1, 2, 5, 7}, {1, 5}), ({2, 4}, set())],
    ids=["1-14", "sparse", "retired", "all retired"],
)
def test_a_reading_gathered_at_once_is_the_long_rows_gathered(known, active):
    lock = RobotAxes(frozenset(known), tuple(sorted(active)))
    for currents in ({1: 2.5, 5: None, 7: 0.0}, {2: 1.0, 4: None}, {}, {3: -1.0, 62: 4.0}, {1: None, 2: 3.0}):
        currents = {a: v for a, v in currents.items() if a in known}
        gathered = list(wide_rows(lock.rows("R", T0, currents)))
        assert [lock.wide("R", T0, currents)] == (gathered or [("R", T0, 0, [])])
        # the same rows, in axis order (the long form gives the retired axes last)
        assert list(long_rows([lock.wide("R", T0, currents)])) == sorted(lock.rows("R", T0, currents))


@pytest.mark.parametrize(
    "known, active",
    [(range(1, 15), range(1, 15)), ({1, 3, 62}, {1, 3, 62}), ({1, 2, 5, 7}, {1, 5}), ({2, 4}, set())],
    ids=["1-14", "sparse", "retired", "all retired"],
)
@pytest.mark.parametrize(
    "columns",
    [
        {1: [2.5, None, 0.0], 2: None, 5: [None, None, None], 7: None},
        {1: [1.0, 2.0, 3.0], 3: [-1.5, 1e-300, 123456.789], 62: None},
        {2: [1.0, None, 2.0], 4: None},
        {1: None, 2: None},
        {},
    ],
)
def test_readings_gathered_as_columns_are_the_readings_gathered_one_by_one(known, active, columns):
    lock = RobotAxes(frozenset(known), tuple(sorted(active)))
    columns = {a: c for a, c in columns.items() if a in known}
    times = [T0 + timedelta(seconds=2 * i) for i in range(3)]
    one_by_one = [
        lock.wide("R\t1", ts, {a: None if c is None else c[i] for a, c in columns.items()})
        for i, ts in enumerate(times)
    ]
    shape = lock.wide_columns(columns)
    if len({axes for _, _, axes, _ in one_by_one}) > 1:
        assert shape is None  # readings whose axes differ: one by one
        return
    if shape is None:  # a retired axis with a value in some reading: one by one, even where the axes agree
        assert any(a not in lock.active and c and any(v is not None for v in c) for a, c in columns.items())
        return
    axes, amps = shape
    assert all(
        axes == reading_axes and [None if c is None else c[i] for c in amps] == reading_amps
        for i, (_, _, reading_axes, reading_amps) in enumerate(one_by_one)
    )
    if axes:
        block = read_copy_text(wide_block_text("R\t1", times, axes, amps))
        assert exactly(block) == exactly(read_copy_text(wide_copy_text(one_by_one)))


def test_the_sink_prepares_each_reading_as_its_long_rows_gathered_and_stores_them(engine):
    """Sink.prepare makes the stored row of each reading at once: the long rows of the schema lock gathered
    (a retired axis with a value included, one without dropped), no row for a reading with nothing to store,
    a refused one a rejected record; what the batch stores is those long rows, counted as such."""
    from common.store.tables import axes_dim
    from common.wire.bus import Message
    from consumer_db.sink import Sink

    AxisLock(engine, [1, 2, 3, 4]).for_robots({"a", "quiet"})  # seeded
    with engine.begin() as conn:  # axis 4 of "a" retired; every axis of "quiet" retired
        conn.execute(axes_dim.update().where(axes_dim.c.axis_id == 4).values(active=False))
        conn.execute(axes_dim.update().where(axes_dim.c.robot_id == "quiet").values(active=False))
    sink = Sink(engine, AxisLock(engine, [1, 2, 3, 4]), TOPICS)
    currents = [{1: 1.5, 2: None}, {4: 2.0, 3: 0.0}, {i: float(i) for i in range(1, 4)}, {9: 1.0}]
    readings = [Reading(robot_id="a", ts=T0 + timedelta(seconds=i), currents=c) for i, c in enumerate(currents)]
    readings.append(Reading(robot_id="quiet", ts=T0, currents={1: None}))
    messages = [Message("readings", 0, i, r.robot_id.encode(), r.to_bytes()) for i, r in enumerate(readings)]

    prepared = sink.prepare(messages)
    locks = sink.lock.for_robots({"a", "quiet"})
    long = [locks[r.robot_id].rows(r.robot_id, r.ts, r.currents) for r in readings[:3]]
    assert prepared.rows == [row for rows in long for row in wide_rows(rows)]
    assert prepared.accepted == 4 and prepared.new.count == sum(map(len, long))
    assert [r["reason"] for r in prepared.batch.rejected] == [
        "axis 9 not in axes_dim for robot a (schema lock: 1, 2, 3, 4)"
    ]
    report = sink.store(prepared)
    assert (report.rows_new, report.rows_seen, report.readings, report.rejected) == (prepared.new.count, 0, 4, 1)
    with engine.connect() as conn:
        stored = conn.execute(
            select(readings_fact.c.robot_id, readings_fact.c.axis_id, readings_fact.c.ts, readings_fact.c.amps)
        ).all()
    assert sorted(stored) == sorted(row for rows in long for row in rows)


def test_the_sink_takes_on_robots_in_the_order_they_first_come_and_refuses_every_reading_of_one_past_the_cap(
    engine,
):
    """The roster is asked once a robot a batch, in the order the robots first come: with room for two, the
    third robot's readings, wherever they sit in the batch, are all rejected records with the reason, before
    axes_dim grows; the other two are stored."""
    from common.store.tables import axes_dim
    from common.wire.schemas import ReadingPolicy
    from consumer_db.sink import Sink

    policy = ReadingPolicy(max_robots=2)
    sink = Sink(engine, AxisLock(engine, [1, 2]), TOPICS, policy=policy)
    robots = ["b", "c", "b", "a", "c", "a", "a"]
    messages = [
        Message(
            "readings",
            0,
            i,
            r.encode(),
            Reading(robot_id=r, ts=T0 + timedelta(seconds=i), currents={1: 1.0}).to_bytes(),
        )
        for i, r in enumerate(robots)
    ]
    report = sink.write(messages)
    assert sink.roster.known == {"b", "c"}
    assert (report.readings, report.rejected) == (4, 3)
    with engine.connect() as conn:
        rejected = conn.execute(
            select(rejected_readings.c.line, rejected_readings.c.robot_id, rejected_readings.c.reason)
        ).all()
        stored = conn.execute(select(readings_fact.c.robot_id).distinct()).scalars().all()
    assert sorted(line for line, _, _ in rejected) == [3, 5, 6]
    assert {robot for _, robot, _ in rejected} == {"a"}
    assert all("MAX_ROBOTS" in reason for _, _, reason in rejected)
    assert sorted(stored) == ["b", "c"]
    with engine.connect() as conn:
        assert sorted(conn.execute(select(axes_dim.c.robot_id).distinct()).scalars()) == ["b", "c"]


def test_a_blocks_plain_decimals_go_to_copy_as_the_file_wrote_them_odd_ones_as_floats():
    """``wide_block_text`` with the cells ``float`` read: plain decimals as they are (no formatting again),
    any other form ``float`` takes (exponent, spaces, underscores, a sign, too long) as the floats' repr."""
    times = [datetime(2022, 10, 17, 12, tzinfo=UTC) + timedelta(seconds=2 * i) for i in range(3)]
    written = {
        1: ("007", "-0", "12.50"),  # plain: kept as written
        2: ("1e-3", "2.5E2", "3"),  # an exponent: formatted again
        3: (" 3.25", "1_000", "+4"),  # float takes them, COPY would not, or not alike
        4: ("0.1000000000000000055511151231257827", "1", "2"),  # longer than 25 characters
    }
    amps = [[float(cell) for cell in written[axis]] for axis in sorted(written)]
    numbers = [written[axis] for axis in sorted(written)]
    text = wide_block_text("R1", times, 0b11110, amps, numbers)
    arrays = [line.split("\t")[3].strip("{}").split(",") for line in text.splitlines()]
    assert [row[0] for row in arrays] == ["007", "-0", "12.50"]
    assert [row[1:] for row in arrays] == [[repr(column[i]) for column in amps[1:]] for i in range(3)]
    assert [[float(cell) for cell in row] for row in arrays] == [list(values) for values in zip(*amps, strict=True)]
    assert text.replace("{007,", "{7.0,").replace("{-0,", "{-0.0,").replace("{12.50,", "{12.5,") == (
        wide_block_text("R1", times, 0b11110, amps)
    )
