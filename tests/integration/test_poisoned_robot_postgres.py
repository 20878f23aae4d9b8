"""A robot poisoned in PostgreSQL by one absurd value (issue 20), and migration 0007's cure.

Before 0007, a stored 1e308 made the fold of its minute overflow at every try: the robot's later readings
were refused, its rollup stopped, `query summary` failed with a traceback. 0007 moves such rows (and NaN)
to rejected_readings and adds a CHECK, so that no writer can store one again.
"""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from common.store.db import make_engine
from common.store.rollup import minute_rollup_of
from common.store.tables import readings_fact, rejected_readings, rollup_progress, seed_axes
from consumer_db.cli import main
from consumer_db.migrate import migrate
from consumer_db.store import insert_readings

pytestmark = pytest.mark.integration


def store_long(conn, rows):
    """What the writer did before 0007 (and 0012): the rows into the table readings_fact, then the fold, which
    for rows of one minute only starts each robot's progress at its first minute (today's writer also keeps
    open_minute, which 0017 makes: it cannot write a database at 0006)."""
    columns = ("robot_id", "axis_id", "ts", "amps")
    conn.execute(insert(readings_fact), [dict(zip(columns, r, strict=True)) for r in rows])
    first = {}
    for robot, _, ts, _ in rows:
        first[robot] = min(first.get(robot, ts), ts).replace(second=0, microsecond=0)
    conn.execute(insert(rollup_progress), [{"robot_id": r, "folded_until": until} for r, until in first.items()])


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_migration_0007_cures_a_poisoned_robot_and_the_check_keeps_it_cured(pg_url, capsys):
    engine = make_engine(pg_url, log_version=False)
    migrate(engine, "0006")
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1, 2])
        store_long(conn, [("R1", 1, T0, 1e308), ("R1", 2, T0, float("nan")), ("R1", 1, T0 + timedelta(seconds=2), 5.0)])
    # the poison: the fold of its minute overflows, every time the next minute's readings make the writer try
    # (the fold of readings_fact's rows, a table at 0006; today's writer folds from `readings`, which came with 0012)
    with pytest.raises(DBAPIError, match="out of range"), engine.begin() as conn:
        conn.execute(minute_rollup_of([readings_fact.c.robot_id == "R1"], arrays=True))
    migrate(engine)
    with engine.begin() as conn:
        assert conn.execute(select(readings_fact.c.amps)).scalars().all() == [5.0]
        moved = conn.execute(select(rejected_readings.c.raw).order_by(rejected_readings.c.raw)).scalars().all()
        assert len(moved) == 2 and all(raw.startswith("robot R1, axis ") for raw in moved)
        # the robot's life goes on: later minutes stored and folded
        insert_readings(conn, [("R1", 1, T0 + timedelta(minutes=m), 6.0 + m) for m in range(3, 7)])
    for absurd in (1e308, float("nan"), -2e6):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(readings_fact), [{"robot_id": "R1", "axis_id": 2, "ts": T0, "amps": absurd}])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(readings_fact)).scalar_one() == 5
        assert conn.execute(text("select count(*) from readings_minute where robot_id = 'R1'")).scalar_one() > 0
    engine.dispose()
    assert main(["--database-url", pg_url, "query", "summary", "--robot-id", "R1", "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("robot_id,axis_id") and out[1].startswith("R1,1,Axis #1,5,")
