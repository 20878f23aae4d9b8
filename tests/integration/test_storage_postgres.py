"""The stored form on PostgreSQL (migration 0012): one row per reading, partitioned by day, retention.

Migration 0012 keeps every row of the long table (OK nulls, sparse axes, axis 62, ingested_at), and back;
the retention drops the raw days past it and nothing else: the rollup and data health of those days stay
as they were, every reading inside the window stays; queries on a time range read only its partitions.
"""

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, insert, select, text

from common.store import queries
from common.store.db import make_engine
from common.store.health import data_health
from common.store.rollup import minute_rollup_of, stamp_stats_of
from common.store.tables import reading_stamps_minute, readings_fact, readings_minute, seed_axes
from consumer_db.migrate import alembic_config, migrate
from consumer_db.partitions import maintain
from consumer_db.store import insert_readings
from tests import rollup_cases as cases

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, tzinfo=UTC)
R = readings_fact
CAT_VIEWS = ("cat_latest_per_axis", "cat_minute_peaks", "cat_axis_summary", "cat_data_health", "cat_gaps")


@pytest.fixture
def engine(pg_url):
    engine = make_engine(pg_url, log_version=False)
    yield engine
    engine.dispose()


def long_rows_of_every_kind() -> list[dict]:
    """R1: 14 axes, 9-14 OK null; R2: axes 1, 3 and 62 only, one reading with axis 1 alone; across two days."""
    rng = random.Random(5)
    rows = []
    for i in range(300):
        ts = T0 + timedelta(hours=23, minutes=50) + timedelta(seconds=4 * i + rng.random())
        rows += [
            {"robot_id": "R1", "axis_id": a, "ts": ts, "amps": rng.uniform(-5, 40) if a <= 8 else None}
            for a in range(1, 15)
        ]
        axes = (1,) if i == 7 else (1, 3, 62)
        rows += [
            {"robot_id": "R2", "axis_id": a, "ts": ts, "amps": None if a == 3 and i % 5 == 0 else rng.random()}
            for a in axes
        ]
    return rows


def long_form(conn) -> list[tuple]:
    return conn.execute(
        select(R.c.robot_id, R.c.axis_id, R.c.ts, R.c.amps, R.c.ingested_at).order_by(R.c.robot_id, R.c.axis_id, R.c.ts)
    ).all()


def views(conn) -> dict[str, list]:
    # in key order; averages compared to 1e-9 (summed in another order)
    return {v: [list(r) for r in conn.execute(text(f"SELECT * FROM {v} ORDER BY 1, 2, 3"))] for v in CAT_VIEWS}


def test_the_migration_moves_every_row_and_back(engine):
    migrate(engine, "0011")
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=range(1, 15))
        seed_axes(conn, robot_ids=["R2"], axes=[1, 3, 62])
        conn.execute(insert(R), long_rows_of_every_kind())
        before, views_before = long_form(conn), views(conn)
    assert len(before) == 300 * 14 + 299 * 3 + 1
    migrate(engine)
    with engine.connect() as conn:
        assert long_form(conn) == before
        cases.assert_close(views(conn), views_before, "cat_ views")
        stored = conn.execute(text("SELECT count(*), count(DISTINCT tableoid) FROM readings")).one()
    assert tuple(stored) == (600, 2)  # one row per reading, in the partitions of its two days
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0011")
    with engine.connect() as conn:
        assert long_form(conn) == before
    migrate(engine)
    with engine.connect() as conn:
        assert long_form(conn) == before


def three_days() -> list[tuple]:
    """R1 every 20 s for three days; R2 the same until 20:00 of the first day, then quiet (its last
    minutes are not folded: no newer reading of it comes)."""
    rng = random.Random(9)
    rows = []
    for robot, until in (("R1", T0 + timedelta(days=3)), ("R2", T0 + timedelta(hours=20))):
        ts = T0 + timedelta(seconds=rng.uniform(0, 20))
        while ts < until:
            rows += [(robot, a, ts, None if a == 3 else round(rng.uniform(0, 30), 3)) for a in cases.AXES]
            ts += timedelta(seconds=rng.choice([20.0, 20.0, 20.0, 95.0]) + rng.randrange(1000) / 1e6)
    return rows


def rollup_rows(conn, table, before: datetime) -> list[dict]:
    return [r for r in cases.stored_rows(conn, table) if r["minute"] < before]


def test_retention_drops_the_raw_days_past_it_and_nothing_else(engine):
    migrate(engine)
    rows = three_days()
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1", "R2"], axes=cases.AXES)
    for start in range(0, len(rows), 4000):
        with engine.begin() as conn:
            insert_readings(conn, rows[start : start + 4000])
    cutoff = T0 + timedelta(days=1)  # now: 12:00 of the third day, one whole day kept before it
    with engine.connect() as conn:
        # what the rollup of the first day must be: the aggregate of its raw rows, computed while they are there
        fresh_minutes = minute_rollup_of([R.c.ts < cutoff], arrays=False)  # peak_ts looked up in the raw rows
        minutes = [dict(r) for r in conn.execute(fresh_minutes).mappings()]
        stamps = [dict(r) for r in conn.execute(stamp_stats_of([R.c.ts < cutoff])).mappings()]
        health = data_health(conn, start=T0, end=cutoff - timedelta(microseconds=1), gap_threshold_s=60)
        summary = queries.axis_summary(conn, start=T0, end=cutoff - timedelta(microseconds=1))
        peaks = queries.window_peaks(conn, start=T0, end=cutoff - timedelta(microseconds=1))
        # over everything: whole hours, the running hour's rows and the unfolded tail
        everything = [queries.axis_summary(conn), queries.resample_hourly(conn)]
        kept = conn.execute(select(R).where(R.c.ts >= cutoff).order_by(R.c.robot_id, R.c.ts, R.c.axis_id)).all()
        assert conn.execute(text("SELECT folded_until FROM rollup_progress WHERE robot_id = 'R2'")).scalar() < cutoff

    report = maintain(engine, ahead_days=2, retention_days=1, now=T0 + timedelta(days=2, hours=12))

    assert report.dropped == ["readings_p20260301"] and report.robots_folded == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(R).where(R.c.ts < cutoff)).scalar() == 0
        assert conn.execute(select(R).where(R.c.ts >= cutoff).order_by(R.c.robot_id, R.c.ts, R.c.axis_id)).all() == kept
        assert len(kept) == sum(1 for r in rows if r[2] >= cutoff)
        by_key = lambda r: (r["robot_id"], r["minute"], r.get("axis_id", 0))  # noqa: E731
        cases.assert_close(rollup_rows(conn, readings_minute, cutoff), sorted(minutes, key=by_key), "readings_minute")
        stored_stamps = rollup_rows(conn, reading_stamps_minute, cutoff)
        cases.assert_close(stored_stamps, sorted(stamps, key=by_key), "reading_stamps_minute")
        cases.check_hour_rollup_is_the_aggregate_of_the_minutes(conn)
        cases.check_fleet_rollup_is_the_sum_of_the_robots(conn)
        after = data_health(conn, start=T0, end=cutoff - timedelta(microseconds=1), gap_threshold_s=60)
        differ = {
            (r["robot_id"], k) for r, e in zip(after, health, strict=True) for k in r if not cases.same(r[k], e[k])
        }
        assert not differ, {
            (robot, k): [r[k] for r in (after, health) for r in r if r["robot_id"] == robot]
            for robot, k in differ
            if k != "gaps"
        }
        cases.assert_close(
            queries.axis_summary(conn, start=T0, end=cutoff - timedelta(microseconds=1)), summary, "summary"
        )
        # the peaks of the dropped day stay, from the rollup, to the microsecond (its peak_ts)
        after_peaks = queries.window_peaks(conn, start=T0, end=cutoff - timedelta(microseconds=1))
        assert after_peaks == peaks
        cases.assert_close([queries.axis_summary(conn), queries.resample_hourly(conn)], everything, "everything")
        partitions = conn.execute(
            text("SELECT relname FROM pg_class WHERE relname ~ '^readings_p' AND relkind = 'r' ORDER BY 1")
        ).scalars()
        assert list(partitions) == [f"readings_p2026030{d}" for d in (2, 3, 4, 5)]  # days 4 and 5: made ahead
    again = maintain(engine, ahead_days=2, retention_days=1, now=T0 + timedelta(days=2, hours=13))
    assert (again.made, again.dropped) == (0, [])


def test_a_day_not_folded_into_the_rollup_is_not_dropped(engine):
    migrate(engine)
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R9"], axes=[1])
        # written past the writers (psql, through the view): stored, never folded
        conn.execute(insert(R), [{"robot_id": "R9", "axis_id": 1, "ts": T0 + timedelta(hours=3), "amps": 2.0}])
    with engine.begin() as conn:
        dropped = conn.execute(text("SELECT drop_readings_partitions(:b)"), {"b": T0 + timedelta(days=5)}).all()
        assert dropped == [] and conn.execute(select(func.count()).select_from(R)).scalar() == 1


def plan_relations(conn, sql: str, params: dict) -> set[str]:
    plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"), params).scalar()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    found, todo = set(), [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        if "Relation Name" in node:
            found.add(node["Relation Name"])
        todo += node.get("Plans", [])
    return found


def test_a_time_range_reads_only_its_partitions(engine):
    migrate(engine)
    rows = [("R1", a, T0 + timedelta(days=d, hours=h), float(h)) for d in range(4) for h in range(24) for a in (1, 2)]
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1, 2])
        insert_readings(conn, rows)
    day2 = {"start": T0 + timedelta(days=2, hours=1), "end": T0 + timedelta(days=2, hours=5)}
    with engine.connect() as conn:
        one_robot = "SELECT ts, axis_id, amps FROM readings_fact WHERE robot_id = 'R1' AND ts BETWEEN :start AND :end"
        assert plan_relations(conn, one_robot, day2) == {"readings_p20260303"}
        fleet = "SELECT axis_id, max(amps) FROM readings_fact WHERE ts >= :start AND ts < :end GROUP BY axis_id"
        assert plan_relations(conn, fleet, day2) == {"readings_p20260303"}
        assert conn.execute(text(one_robot), day2).all() == [
            (T0 + timedelta(days=2, hours=h), a, float(h)) for h in range(1, 6) for a in (1, 2)
        ]
