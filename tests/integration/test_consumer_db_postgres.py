"""consumer_db on a real PostgreSQL: the phrase tests, the schema, the views, bulk ingest of the real export."""

from datetime import UTC

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text

from common.csvio.controller_csv import CsvOptions
from common.store.db import make_engine
from common.store.tables import metadata, readings_fact, rejected_readings, schema_object
from consumer_db.ingest import IngestOptions, ingest_csv
from consumer_db.phrases import QueryArgs, ask
from tests.phrase_fixture import CASES, load
from tests.unit.test_exports import check_sample_sizes
from tests.unit.test_phrases import comparable

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(pg_url):
    engine = make_engine(pg_url, log_version=False)
    yield engine
    engine.dispose()


def test_phrases_give_the_same_exact_rows_on_postgres(engine):
    load(engine)
    with engine.connect() as conn:
        opts = {"compare_type": True, "include_object": schema_object("postgresql")}
        assert compare_metadata(MigrationContext.configure(conn, opts=opts), metadata) == []
        for phrase, args, rows, tables in CASES:
            answer = ask(conn, phrase, QueryArgs(**args))
            assert comparable(answer.rows) == comparable(rows), phrase
            assert {k: comparable(v) for k, v in answer.tables.items()} == {
                k: comparable(v) for k, v in tables.items()
            }, phrase
        views = {
            v: conn.execute(text(f"SELECT count(*) FROM {v}")).scalar()
            for v in ("cat_latest_per_axis", "cat_minute_peaks", "cat_axis_summary", "cat_data_health", "cat_gaps")
        }
    assert views == {
        "cat_latest_per_axis": 6,
        "cat_minute_peaks": 10,
        "cat_axis_summary": 6,
        "cat_data_health": 2,
        "cat_gaps": 1,
    }


def test_the_export_sample_holds_as_many_readings_as_asked(engine):
    load(engine)
    check_sample_sizes(engine)


def test_bulk_ingest_of_the_real_export_through_copy_and_again(engine, real_export):
    from consumer_db.migrate import migrate

    migrate(engine)
    options = IngestOptions(CsvOptions("RMBR4-2"))
    first = ingest_csv(engine, real_export, options)
    second = ingest_csv(engine, real_export, options)
    assert (first.readings, first.rows_new, first.rejected) == (39_672, 555_408, 0)
    assert (second.rows_new, second.rows_seen) == (0, 555_408)
    with engine.connect() as conn:
        total, values, stamps = conn.execute(
            select(func.count(), func.count(readings_fact.c.amps), func.count(func.distinct(readings_fact.c.ts)))
        ).one()
        peak = conn.execute(select(func.max(readings_fact.c.amps))).scalar()
        assert conn.execute(select(func.count()).select_from(rejected_readings)).scalar() == 0
    assert (total, values, stamps) == (555_408, 39_672 * 8, 39_672)
    assert peak == pytest.approx(51.713, abs=0.001)  # the data README: axis 2 reaches 51.7 A


def test_copy_path_handles_overlaps_and_duplicates_within_a_batch(engine):
    from datetime import datetime, timedelta

    from consumer_db.migrate import migrate
    from consumer_db.store import insert_readings

    migrate(engine)
    t0 = datetime(2022, 10, 17, tzinfo=UTC)
    rows = [("r", axis, t0 + timedelta(seconds=i), float(i)) for i in range(600) for axis in (1, 2)]
    with engine.begin() as conn:
        assert insert_readings(conn, rows[:600], copy_min_rows=1) == 600  # new data: straight COPY
    with engine.begin() as conn:
        assert insert_readings(conn, rows, copy_min_rows=1) == 600  # overlaps: through the staging table
    with engine.begin() as conn:
        doubled = [("s", 1, t0, 1.0), ("s", 1, t0, 1.0), ("s", 2, t0, None)]
        assert insert_readings(conn, doubled, copy_min_rows=1) == 2  # COPY meets the duplicate, falls back
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(readings_fact)).scalar() == 1202


def test_readings_whose_rows_interleave_are_stored_whole(engine):
    """Rows of two robots' readings alternating, each axis its own row: every row stored, through the
    straight COPY and through the staging table."""
    from datetime import datetime, timedelta

    from consumer_db.migrate import migrate
    from consumer_db.store import insert_readings

    migrate(engine)
    t0 = datetime(2022, 10, 17, tzinfo=UTC)
    rows = [
        (robot, axis, t0 + timedelta(seconds=i), float(axis)) for i in range(4) for axis in (1, 2, 3) for robot in "ab"
    ]
    with engine.begin() as conn:
        assert insert_readings(conn, rows[:12], copy_min_rows=1) == 12
    with engine.begin() as conn:
        assert insert_readings(conn, rows, copy_min_rows=1) == 12  # the first half there: the staging table
    with engine.connect() as conn:
        stored = conn.execute(select(readings_fact.c.robot_id, readings_fact.c.axis_id, readings_fact.c.amps)).all()
    assert sorted(stored) == sorted((robot, axis, value) for robot, axis, _, value in rows)


def test_a_message_the_database_refuses_is_rejected_alone(engine):
    from datetime import datetime

    from common.store.tables import alerts
    from common.wire.bus import Message
    from common.wire.schemas import Alert, Reading
    from consumer_db.axislock import AxisLock
    from consumer_db.decode import Topics
    from consumer_db.migrate import migrate
    from consumer_db.sink import Sink

    migrate(engine)
    t0 = datetime(2022, 10, 17, tzinfo=UTC)
    good = Alert(event_id="ok", robot_id="r", axis=1, detector="zscore", severity="ALERT", state="open", opened_at=t0)
    too_long = good.model_copy(update={"event_id": "long", "detector": "d" * 500})
    reading = Reading(robot_id="r", ts=t0, currents={1: 2.0})
    messages = [
        Message("alerts", 0, 0, b"r", good.to_bytes()),
        Message("alerts", 0, 1, b"r", too_long.to_bytes()),
        Message("readings", 0, 0, b"r", reading.to_bytes()),
    ]
    sink = Sink(engine, AxisLock(engine, [1, 2]), Topics("readings", "alerts", "dead"))
    report = sink.write(messages)
    assert (report.alerts, report.rejected, report.rows_new) == (1, 1, 2)
    with engine.connect() as conn:
        assert conn.execute(select(alerts.c.event_id)).scalars().all() == ["ok"]
        origin, reason = conn.execute(select(rejected_readings.c.origin, rejected_readings.c.reason)).one()
    assert origin == "alerts/0/1" and reason.startswith("refused by the database: value too long")


@pytest.mark.parametrize("copy_min_rows", [1, 1_000_000], ids=["copy", "insert"])
def test_a_redelivered_batch_is_no_conflict_and_one_reading_stored_otherwise_is_one(engine, copy_min_rows):
    """A Kafka redelivery (the batch stored already) leaves no dead letter, and a batch holding one reading
    stored with other values yields exactly that one conflict, whether the batch goes through COPY or a
    multi-row INSERT (both reach the staging table when rows are there already)."""
    from datetime import datetime, timedelta

    from common.wire.bus import Message
    from common.wire.schemas import Reading
    from consumer_db.axislock import AxisLock
    from consumer_db.decode import Topics
    from consumer_db.migrate import migrate
    from consumer_db.sink import Sink

    migrate(engine)
    sink = Sink(engine, AxisLock(engine, [1, 2, 3]), Topics("readings", "alerts", "dead"), copy_min_rows=copy_min_rows)
    t0 = datetime(2022, 10, 17, tzinfo=UTC)
    readings = [
        Reading(robot_id="r", ts=t0 + timedelta(seconds=i), currents={1: float(i), 2: i / 4, 3: None})
        for i in range(200)
    ]

    def messages(batch: list[Reading], first_offset: int) -> list[Message]:
        return [Message("readings", 0, first_offset + n, b"r", r.to_bytes()) for n, r in enumerate(batch)]

    assert sink.write(messages(readings, 0)).rows_new == 600  # axis 3 too: a row with no value
    again = sink.write(messages(readings, 0))
    assert (again.rows_new, again.rows_seen, again.conflicts, again.rejected, again.readings) == (0, 600, 0, 0, 200)
    changed = list(readings)
    changed[57] = readings[57].model_copy(update={"currents": {1: 57.0, 2: 99.5, 3: None}})
    other = sink.write(messages(changed, 1000))
    assert (other.rows_new, other.conflicts, other.rejected, other.readings) == (0, 1, 1, 199)
    with engine.connect() as conn:
        (origin, reason), *more = conn.execute(select(rejected_readings.c.origin, rejected_readings.c.reason)).all()
        stored = conn.execute(
            select(readings_fact.c.amps).where(
                readings_fact.c.ts == t0 + timedelta(seconds=57), readings_fact.c.axis_id == 2
            )
        ).scalar()
    assert more == [] and origin == "readings/0/1057"
    assert reason.startswith("conflict") and "axis 2: stored 14.25, this one 99.5" in reason
    assert stored == 14.25  # the stored reading is kept, not overwritten


def test_copy_stores_the_very_values_an_insert_stores(engine):
    """The sink's COPY text (times and currents as msgspec writes them, ``consumer_db.store.wide_copy_text``)
    stores, to the bit, what was given, as the INSERT of a small batch of the same rows does: -0.0, 17
    significant digits, numbers msgspec writes with an exponent, microseconds, days far apart. Nothing below
    1e-150 A: the rollup's fold squares the currents, and PostgreSQL refuses a product that underflows (the
    policy refuses a current below MIN_NONZERO_AMPS, 1e-100 A, before it comes here)."""
    import random
    import struct
    from datetime import datetime, timedelta

    from consumer_db.migrate import migrate
    from consumer_db.store import insert_readings

    migrate(engine)
    rng = random.Random(23)
    doubles = (struct.unpack("<d", rng.randbytes(8))[0] for _ in range(100_000))
    awkward = [v for v in doubles if 1e-150 <= abs(v) <= 1e6][:600]  # bit patterns the table's CHECK allows
    values = [0.0, -0.0, 1e-150, 1e-7, 1e-5, 1e16 / 1e12, 0.1, 1 / 3, 999999.9999999999, -1e6]
    values += awkward + [rng.uniform(-50, 50) for _ in range(600)]
    days = [datetime(1991, 3, 1, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC), datetime(2099, 12, 31, tzinfo=UTC)]
    times = [rng.choice(days) + timedelta(microseconds=rng.randrange(86_400_000_000)) for _ in values]
    rows = {
        robot: [(robot, 1 + i % 14, times[i - i % 14], v) for i, v in enumerate(values)] for robot in ("copy", "insert")
    }
    with engine.begin() as conn:
        assert insert_readings(conn, rows["copy"], copy_min_rows=1) == len(values)
        assert insert_readings(conn, rows["insert"], copy_min_rows=10**9) == len(values)
    with engine.connect() as conn:
        stored = conn.execute(
            select(readings_fact.c.robot_id, readings_fact.c.axis_id, readings_fact.c.ts, readings_fact.c.amps)
        ).all()
    exactly = {robot: sorted((a, ts, repr(v)) for r, a, ts, v in stored if r == robot) for robot in rows}
    assert exactly["copy"] == sorted((a, ts, repr(v)) for _, a, ts, v in rows["copy"])
    # -0.0 too: psycopg2 wrote it as the SQL expression -0.0 (a minus applied to numeric 0), stored as 0.0.
    assert exactly["insert"] == exactly["copy"]


def test_health_events_of_robots_past_max_robots_are_refused_and_the_roster_learns_them_back(engine):
    """On PostgreSQL as on SQLite (tests/unit/test_consumer_db_service.py): health events are held to the
    sink's roster, so made-up robot ids past MAX_ROBOTS leave dead letters, not forecast rows, and the robots
    a restart learns (``known_robots``) are those of axes_dim and health_forecast."""
    import uuid
    from datetime import datetime

    from common.store.tables import health_forecast
    from common.wire.bus import Message
    from common.wire.schemas import AxisForecast, HealthEvent, Reading, ReadingPolicy, RobotRoster
    from consumer_db.axislock import AxisLock, known_robots
    from consumer_db.decode import Topics
    from consumer_db.migrate import migrate
    from consumer_db.sink import Sink

    migrate(engine)
    tag, t0 = uuid.uuid4().hex[:8], datetime(2022, 10, 17, tzinfo=UTC)
    robots = [f"{tag}-made-up-{i}" for i in range(10)] + [f"{tag}-r1"]
    f = AxisForecast(axis=1, level=0.1, slope_per_day=0.01, limit=0.3, days_left=20.0)
    messages = [
        Message(
            "readings", 0, 0, robots[-1].encode(), Reading(robot_id=robots[-1], ts=t0, currents={1: 2.0}).to_bytes()
        )
    ]
    messages += [
        Message(
            "health", 0, i, r.encode(), HealthEvent(robot_id=r, kind="forecast", start=t0, forecasts=[f]).to_bytes()
        )
        for i, r in enumerate(robots)
    ]
    policy = ReadingPolicy(max_robots=3)
    sink = Sink(
        engine,
        AxisLock(engine, [1]),
        Topics("readings", "alerts", "dead", "health"),
        policy=policy,
        roster=RobotRoster(policy),
    )
    report = sink.write(messages)
    assert (report.rejected, report.health_rows) == (8, 3)
    taken = {robots[-1], robots[0], robots[1]}
    with engine.connect() as conn:
        stored = set(
            conn.execute(
                select(health_forecast.c.robot_id).where(health_forecast.c.robot_id.like(f"{tag}-%"))
            ).scalars()
        )
        refused = conn.execute(
            select(rejected_readings.c.robot_id, rejected_readings.c.reason).where(
                rejected_readings.c.robot_id.like(f"{tag}-%")
            )
        ).all()
    assert stored == taken
    assert sorted(r for r, _ in refused) == sorted(robots[2:-1]) and all("MAX_ROBOTS" in why for _, why in refused)
    assert {r for r in known_robots(engine) if r.startswith(tag)} == taken
