"""consumer_db.turns: a batch's transaction goes on past its rows only once the previous batch is committed."""

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, func, select

from common.store.tables import readings_fact
from common.wire.bus import Message
from common.wire.schemas import Reading
from consumer_db.axislock import AxisLock
from consumer_db.decode import Topics
from consumer_db.migrate import migrate
from consumer_db.sink import Sink
from consumer_db.turns import PreviousNotWritten, Turn

T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)


def waiting(turn: Turn) -> tuple[threading.Thread, list]:
    """``turn.wait()`` in a thread of its own; the list gets what it returned or raised."""
    outcome: list = []

    def wait() -> None:
        try:
            turn.wait()
            outcome.append("went on")
        except PreviousNotWritten as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread, outcome


def test_the_first_turn_goes_on_at_once():
    thread, outcome = waiting(Turn())
    thread.join(1.0)  # a turn with nothing before it does not wait at all
    assert outcome == ["went on"] and not thread.is_alive()


@pytest.mark.parametrize("committed", [True, False])
def test_a_turn_waits_until_the_previous_one_ends_and_goes_on_only_if_it_was_committed(committed):
    first = Turn()
    thread, outcome = waiting(Turn(first))
    thread.join(0.3)
    assert thread.is_alive() and outcome == []
    first.end(committed=committed)
    thread.join(5)
    assert not thread.is_alive()
    if committed:
        assert outcome == ["went on"]
    else:
        assert len(outcome) == 1 and isinstance(outcome[0], PreviousNotWritten)


def test_a_batch_after_one_that_was_not_written_is_not_stored(sqlite_url):
    engine = create_engine(sqlite_url)
    migrate(engine)
    sink = Sink(engine, AxisLock(engine, [1, 2]), Topics("readings", "alerts", "dead"))
    reading = Reading(robot_id="r1", ts=T0, currents={1: 1.0, 2: None})
    prepared = sink.prepare([Message("readings", 0, 0, b"r1", reading.to_bytes())])
    first = Turn()
    first.end(committed=False)
    with pytest.raises(PreviousNotWritten):
        sink.store(prepared, Turn(first))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(readings_fact)).scalar_one() == 0
    assert sink.store(prepared, Turn()).rows_new == 2
    engine.dispose()


def test_a_turn_lets_go_of_the_previous_one_when_it_ends():
    first = Turn()
    second = Turn(first)
    second.end(committed=True)
    assert second._previous is None  # else every turn of the stream would stay reachable from the newest
