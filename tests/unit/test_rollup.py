"""The per-minute rollup on SQLite: exact under replays, and the queries built on it answer as the raw rows do."""
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from common import queries
from common.tables import seed_axes
from consumer_db.migrate import migrate
from consumer_db.store import insert_readings
from tests import rollup_cases as cases


@pytest.fixture
def engine(sqlite_url):
    engine = create_engine(sqlite_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_queries_on_the_rollup_answer_as_the_raw_rows_after_replays(engine, seed):
    cases.store_with_replays(engine, cases.readings(seed), seed)
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    cases.check_queries_match_raw_rows(engine)


def test_the_migration_backfills_readings_stored_before_it(sqlite_url):
    engine = create_engine(sqlite_url)
    migrate(engine, "0002")
    rows = cases.readings(7)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO axes_dim (robot_id, axis_id, label) VALUES ('R1', 1, 'Axis #1'), "
                          "('R1', 2, 'Axis #2'), ('R1', 3, 'Axis #3'), ('R1', 4, 'Axis #4'), ('R2', 1, 'Axis #1'), "
                          "('R2', 2, 'Axis #2'), ('R2', 3, 'Axis #3'), ('R2', 4, 'Axis #4')"))
        # before 0003 nothing kept a rollup: store the rows as a writer of that day did
        for start in range(0, len(rows), 500):
            conn.execute(text("INSERT INTO readings_fact (robot_id, axis_id, ts, amps) VALUES (:r, :a, :t, :v)"),
                         [{"r": r, "a": a, "t": t.strftime("%Y-%m-%d %H:%M:%S.%f"), "v": v} for r, a, t, v in rows[start:start + 500]])
    migrate(engine)
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    cases.check_queries_match_raw_rows(engine)
    engine.dispose()


def test_a_reading_filling_a_gap_inside_a_stored_minute_removes_the_gap(engine):
    at = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1])
        insert_readings(conn, [("R1", 1, at(s), 1.0) for s in (0, 2, 30, 32)])
    with engine.connect() as conn:
        assert [g["length_s"] for g in queries.data_health(conn, robot_id="R1")[0]["gaps"]] == [28.0]
    with engine.begin() as conn:
        insert_readings(conn, [("R1", 1, at(s), 2.0) for s in range(4, 30, 2)])
    with engine.connect() as conn:
        health = queries.data_health(conn, robot_id="R1")[0]
        assert (health["gaps"], health["readings"]) == ([], 17)
        assert queries.resample_1min(conn, robot_id="R1")[0]["mean_amps"] == pytest.approx((4 + 13 * 2) / 17)
