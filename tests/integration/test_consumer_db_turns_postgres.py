"""consumer_db.turns on a real PostgreSQL: the next batch's rows are written while the previous transaction
runs, its commit waits for that one's, and a batch that holds up the previous one gives way."""

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from common.store.db import make_engine
from common.store.tables import readings_fact, rollup_progress
from common.wire.bus import Message
from common.wire.schemas import Reading
from consumer_db.axislock import AxisLock
from consumer_db.decode import Topics
from consumer_db.migrate import migrate
from consumer_db.sink import Sink
from consumer_db.turns import POLL_S, Turn
from tests.fault_support import poll

pytestmark = pytest.mark.integration

T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)
AXES = list(range(1, 15))
# Another session of this database holds new rows of readings (the stored form under the view readings_fact):
# a transaction that has written rows.
ROWS_WRITTEN_ELSEWHERE = text(
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.datname = current_database() "
    "AND l.pid <> pg_backend_pid() AND l.relation = 'readings'::regclass AND l.mode = 'RowExclusiveLock'"
)


def sink_on(engine) -> Sink:
    return Sink(engine, AxisLock(engine, AXES), Topics("readings", "alerts", "dead"))


@pytest.fixture
def sink(pg_url):
    engine = make_engine(pg_url, log_version=False)
    migrate(engine)
    yield sink_on(engine)
    engine.dispose()


def batch(first: int, count: int, offset: int) -> list[Message]:
    """``count`` readings of robot r1 from the ``first``-th (2 s apart), every axis with a value."""
    readings = [
        Reading(robot_id="r1", ts=T0 + timedelta(seconds=2 * i), currents={a: float(i) for a in AXES})
        for i in range(first, first + count)
    ]
    return [Message("readings", 0, offset + n, b"r1", r.to_bytes()) for n, r in enumerate(readings)]


def in_thread(call) -> tuple[threading.Thread, list]:
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    thread.start()
    return thread, outcome


def scalar(sink: Sink, query) -> int:
    with sink.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def stored(sink: Sink) -> int:
    return scalar(sink, select(func.count()).select_from(readings_fact))


def test_the_next_batch_writes_its_rows_while_the_previous_transaction_runs_and_commits_after_it(sink):
    first = Turn()
    second = Turn(first)
    thread, outcome = in_thread(lambda: sink.store(sink.prepare(batch(100, 100, 100)), second))
    poll(lambda: scalar(sink, ROWS_WRITTEN_ELSEWHERE) > 0, "its COPY done", timeout=20, every=0.05)
    thread.join(0.5)
    assert thread.is_alive()  # ... and then it waits for the previous batch's commit
    assert stored(sink) == 0 and scalar(sink, select(func.count()).select_from(rollup_progress)) == 0
    first.end(committed=True)
    thread.join(30)
    assert not thread.is_alive() and outcome[0].rows_new == 100 * len(AXES)
    assert stored(sink) == 100 * len(AXES)


def test_a_batch_that_holds_up_the_previous_one_gives_way_and_nothing_is_lost_or_doubled(sink, caplog):
    """The two batches share a reading. The later one's COPY comes first and holds that reading's rows; the
    earlier one's COPY then waits for them, and the later one waits for the earlier one's commit: a deadlock
    PostgreSQL cannot see, unless the later one gives way."""
    caplog.set_level(logging.INFO, logger="consumer_db.sink")
    earlier_turn = Turn()
    later_turn = Turn(earlier_turn)
    later, later_outcome = in_thread(lambda: sink.store(sink.prepare(batch(99, 101, 1000)), later_turn))
    poll(lambda: scalar(sink, ROWS_WRITTEN_ELSEWHERE) > 0, "the later batch's COPY done", timeout=20, every=0.05)
    later.join(3 * POLL_S)  # it has asked whether it holds anybody up, and nobody yet: it must ask afresh

    def earlier_store():
        # on a connection of its own, opened after the later batch started waiting (as another instance's)
        engine = make_engine(sink.engine.url, log_version=False)
        try:
            other = sink_on(engine)
            report = other.store(other.prepare(batch(0, 100, 0)), earlier_turn)
        finally:
            engine.dispose()
        earlier_turn.end(committed=True)  # what the service does once the store returns
        return report

    earlier, earlier_outcome = in_thread(earlier_store)
    earlier.join(30)
    later.join(30)
    assert not earlier.is_alive() and not later.is_alive(), "deadlocked"
    assert "held up the one before it" in caplog.text
    assert earlier_outcome[0].rows_new == 100 * len(AXES)
    assert (later_outcome[0].rows_new, later_outcome[0].rows_seen) == (100 * len(AXES), len(AXES))
    assert stored(sink) == 200 * len(AXES)
    assert scalar(sink, select(func.count(func.distinct(readings_fact.c.ts)))) == 200
