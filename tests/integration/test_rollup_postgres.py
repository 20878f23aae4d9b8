"""The per-minute rollup on PostgreSQL: exact through COPY, the staging table and replays, and with two
writers of one robot's minute at once; the queries built on it answer as the raw rows do."""
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from common.db import make_engine
from consumer_db.migrate import migrate
from consumer_db.store import insert_readings
from tests import rollup_cases as cases

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(pg_url):
    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("copy_min_rows", [1, 100_000], ids=["copy", "insert"])
def test_queries_on_the_rollup_answer_as_the_raw_rows_after_replays(engine, copy_min_rows):
    cases.store_with_replays(engine, cases.readings(11), 11, copy_min_rows=copy_min_rows)
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    cases.check_queries_match_raw_rows(engine)


def test_the_migration_backfills_readings_stored_before_it(pg_url):
    engine = make_engine(pg_url, log_version=False)
    migrate(engine, "0002")
    rows = cases.readings(5)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO axes_dim (robot_id, axis_id, label) SELECT r, a, 'Axis #' || a "
                          "FROM unnest(ARRAY['R1', 'R2']) r, generate_series(1, 4) a"))
        conn.execute(text("INSERT INTO readings_fact (robot_id, axis_id, ts, amps) VALUES (:r, :a, :t, :v)"),
                     [{"r": r, "a": a, "t": t, "v": v} for r, a, t, v in rows])
    migrate(engine)
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    cases.check_queries_match_raw_rows(engine)
    engine.dispose()


def test_two_writers_of_one_robots_minute_at_once_both_count(engine):
    """The second writer's rollup waits for the first one's commit, then reads both writers' rows."""
    at = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
    first_stored, second_done = threading.Event(), threading.Event()

    def second() -> None:
        first_stored.wait(10)
        with engine.begin() as conn:
            insert_readings(conn, [("R1", 1, at(40), 4.0)])
        second_done.set()

    writer = threading.Thread(target=second)
    writer.start()
    with engine.begin() as conn:
        insert_readings(conn, [("R1", 1, at(10), 2.0)])
        first_stored.set()
        assert not second_done.wait(1.0)  # held at the rollup lock while this transaction is open
    writer.join(10)
    assert second_done.is_set()
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    with engine.connect() as conn:
        n_rows, total = conn.execute(text("SELECT n_rows, sum_amps FROM readings_minute")).one()
    assert (n_rows, total) == (2, 6.0)
