"""The fleet's smoothed curve: averaged over robots in the database (the fleet's rollup), the same curve the
page drew from every robot's rows."""

import random
from datetime import timedelta

import pytest
from sqlalchemy import create_engine

from common.store import queries
from common.store.tables import seed_axes
from consumer_db.migrate import migrate
from consumer_db.store import insert_readings
from dashboard.history import range_start
from dashboard.history_data import smoothed_columns
from tests.rollup_cases import T0

AXES = [1, 2, 3]


def test_fleet_minute_means_draw_the_curve_of_every_robots_rows(sqlite_url):
    engine = create_engine(sqlite_url)
    migrate(engine)
    rnd = random.Random(5)
    robots = ["R1", "R2", "R3"]
    rows = [
        (robot, axis, T0 + timedelta(seconds=2 * i + k * 0.3), None if axis == 3 else round(rnd.uniform(0, 40), 3))
        for k, robot in enumerate(robots)
        for i in range(200)
        if not (robot == "R2" and 60 <= i < 120) and not (robot == "R3" and i % 2)  # R3: half as many
        for axis in AXES
    ]
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=robots, axes=AXES)
        insert_readings(conn, rows)
    start, end = T0 + timedelta(seconds=37), T0 + timedelta(seconds=333)  # partial minutes at both ends
    with engine.connect() as conn:
        fleet = queries.fleet_minute_means(conn, start=start, end=end)
        every_robot = queries.resample_1min(conn, start=start, end=end, folded_only=True)
    assert len(fleet) < len(every_robot)
    got, want = smoothed_columns(fleet, AXES), smoothed_columns(every_robot, AXES)
    assert got["ts"] == want["ts"] and len(got["ts"]) == 4, "the whole minutes 08:01 to 08:04"
    for axis in (1, 2):
        assert got[f"m{axis}"] == pytest.approx(want[f"m{axis}"])
    assert all(v != v for v in got["m3"]), "an axis that is OK null everywhere has no curve"
    engine.dispose()


def test_the_history_range_starts_at_the_whole_minute_its_span_reaches_into():
    end = T0 + timedelta(hours=3, seconds=37.5)
    assert range_start(end, timedelta(hours=1)) == T0 + timedelta(hours=2)
    assert range_start(T0 + timedelta(hours=1), timedelta(hours=1)) == T0
    assert range_start(end, None) is None and range_start(None, timedelta(hours=1)) is None
