"""Each robot's open minutes (``open_minute``, PostgreSQL): after every kind of write the rows equal the
aggregate of the raw rows from the robot's folded_until on (``rollup_cases.assert_open_rows_are_the_aggregate_of``,
sums within an explicit few ulp), and the readers answer over everything from them, as the raw rows do."""

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from common.store import queries
from common.store.tables import open_minute, readings, readings_fact, rollup_progress, seed_axes
from consumer_db.store import insert_readings
from tests import rollup_cases as cases

pytestmark = pytest.mark.integration

ROBOTS = ("R1", "R2")
AXES = tuple(range(1, 15))  # 9-14 stored as NULLs ("OK null"), as a controller reports unused axes


def tick(rng: random.Random, robot: str, ts) -> list[tuple]:
    return [(robot, axis, ts, None if axis >= 9 else rng.choice([0.0, round(rng.uniform(-3, 9), 3)])) for axis in AXES]


def ticks(seed: int, seconds: int, start=cases.T0) -> list[list[tuple]]:
    """One batch per ~2 s tick of both robots, as the sink writes them."""
    rng = random.Random(seed)
    return [
        [
            row
            for robot in ROBOTS
            for row in tick(rng, robot, start + timedelta(seconds=s, microseconds=rng.randrange(9)))
        ]
        for s in range(0, seconds, 2)
    ]


def check(pg_engine) -> None:
    R, P = readings_fact, rollup_progress
    with pg_engine.connect() as conn:
        cases.assert_open_rows_are_the_aggregate_of(conn, [R.c.robot_id == P.c.robot_id, R.c.ts >= P.c.folded_until])
        assert conn.execute(select(func.count()).select_from(open_minute)).scalar() > 0  # the rows are there to check


@pytest.fixture
def seeded(pg_engine):
    with pg_engine.begin() as conn:
        seed_axes(conn, robot_ids=list(ROBOTS), axes=AXES)
    return pg_engine


@pytest.mark.parametrize("copy_min_rows", [1, 100_000], ids=["copy", "insert"])
def test_tick_by_tick_writes_keep_the_open_minutes_and_close_them_at_the_fold(seeded, copy_min_rows):
    with seeded.connect() as conn:
        folded_before = dict(conn.execute(select(rollup_progress.c.robot_id, rollup_progress.c.folded_until)).all())
    assert folded_before == {}
    for batch in ticks(3, 240):  # 4 minutes: each robot's minutes close (fold) as they pass its fold delay
        with seeded.begin() as conn:
            insert_readings(conn, batch, copy_min_rows=copy_min_rows)
        check(seeded)
    with seeded.connect() as conn:
        folded = dict(conn.execute(select(rollup_progress.c.robot_id, rollup_progress.c.folded_until)).all())
        below = conn.execute(
            select(func.count())
            .select_from(open_minute.join(rollup_progress, open_minute.c.robot_id == rollup_progress.c.robot_id))
            .where(open_minute.c.minute < rollup_progress.c.folded_until)
        ).scalar()
    assert min(folded.values()) >= cases.T0 + timedelta(minutes=2) and below == 0  # minutes closed, rows gone
    cases.check_rollup_is_the_aggregate_of_the_rows(seeded)
    cases.check_queries_match_raw_rows(seeded)


def test_a_redelivery_whole_or_in_part_leaves_the_open_minutes_exact(seeded):
    batches = ticks(5, 50)
    for batch in batches:
        with seeded.begin() as conn:
            insert_readings(conn, batch, copy_min_rows=1)
    with seeded.begin() as conn:
        assert insert_readings(conn, batches[-1], copy_min_rows=1) == 0  # redelivered: nothing stored, nothing added
    check(seeded)
    more = ticks(6, 4, start=cases.T0 + timedelta(seconds=51))
    with seeded.begin() as conn:  # one reading stored already and a new one: the staging table's path
        assert insert_readings(conn, batches[-1] + more[0], copy_min_rows=1) == len(more[0])
    check(seeded)
    half = [(robot, axis, ts, amps) for robot, axis, ts, amps in more[1] if axis <= 4]
    with seeded.begin() as conn:  # a reading stored in part, then its other axes: its minute recomputed
        insert_readings(conn, half, copy_min_rows=1)
        insert_readings(conn, [r for r in more[1] if r not in half], copy_min_rows=1)
    check(seeded)


def test_a_reading_before_the_open_minutes_last_one_recomputes_the_minute(seeded):
    batches = ticks(7, 40)
    for batch in batches:
        with seeded.begin() as conn:
            insert_readings(conn, batch, copy_min_rows=1)
    with seeded.connect() as conn:
        minute, last_ts = conn.execute(
            select(open_minute.c.minute, open_minute.c.last_ts).where(open_minute.c.robot_id == "R1")
        ).one()
    early = last_ts - timedelta(seconds=1, microseconds=500)  # between two stored readings: a new longest step
    assert early > minute
    with seeded.begin() as conn:
        assert insert_readings(conn, tick(random.Random(2), "R1", early), copy_min_rows=1) == len(AXES)
    check(seeded)
    with seeded.connect() as conn:
        readings_of_minute = conn.execute(
            select(func.count()).where(readings.c.robot_id == "R1", readings.c.ts >= minute)
        ).scalar()
        stored = conn.execute(select(open_minute.c.readings).where(open_minute.c.robot_id == "R1")).scalar()
    assert stored == readings_of_minute


def test_the_readers_over_everything_read_no_raw_rows(seeded):
    for batch in ticks(9, 20):
        with seeded.begin() as conn:
            insert_readings(conn, batch, copy_min_rows=1)
    with seeded.connect() as conn:
        for phrase in (queries.window_peaks, queries.axis_summary, queries.resample_hourly):
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            before = _reads_of_readings(conn)
            assert phrase(conn, robot_id=None, start=None, end=None)
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            assert _reads_of_readings(conn) == before, phrase.__name__


def _reads_of_readings(conn) -> int:
    """Tuples read from the readings' partitions by this backend's transactions so far."""
    return conn.execute(
        text(
            "SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0) "
            "FROM pg_stat_xact_user_tables WHERE relname LIKE 'readings_p%'"
        )
    ).scalar()
