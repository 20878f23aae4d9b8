"""The live page's "latest per axis" and "1-minute peak" agree with common.store.queries on the same data."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from common.store import queries
from common.store.tables import metadata, readings_fact, seed_axes
from common.wire.schemas import Reading
from dashboard.stats import latest_per_axis, one_minute_peak
from tests.dashboard_support import T0

AXES = [1, 2, 3, 9]
amps = st.one_of(st.none(), st.sampled_from([0.0, 1.5, 7.25, 7.25, 30.0]), st.floats(0, 50, allow_nan=False))
steps = st.lists(
    st.tuples(st.floats(0.5, 40), st.lists(amps, min_size=len(AXES), max_size=len(AXES))), min_size=1, max_size=40
)


def readings_of(robot: str, spec) -> list[Reading]:
    out, ts = [], T0
    for gap_s, values in spec:
        ts += timedelta(seconds=round(gap_s, 3))
        out.append(Reading(robot_id=robot, ts=ts, currents=dict(zip(AXES, values, strict=True))))
    return out


def store(engine, readings: list[Reading]) -> None:
    with engine.begin() as conn:
        seed_axes(conn, robot_ids={r.robot_id for r in readings}, axes=AXES)
        conn.execute(
            readings_fact.insert(),
            [
                {"robot_id": r.robot_id, "axis_id": a, "ts": r.ts, "amps": v}
                for r in readings
                for a, v in r.currents.items()
            ],
        )


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'stats.sqlite'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mine=steps, other=steps)
def test_in_memory_figures_agree_with_the_database(engine, mine, other):
    metadata.drop_all(engine)
    metadata.create_all(engine)
    readings = readings_of("R1", mine)
    store(engine, readings + readings_of("R2", other))  # another robot's data must not leak in
    with engine.connect() as conn:
        db_latest = queries.latest_per_axis(conn, robot_id="R1")
        db_peak = queries.one_minute_peak(conn, robot_id="R1")
    live = latest_per_axis(readings)
    assert {(r["axis_id"], r["ts"], r["amps"]) for r in db_latest} == {(v.axis, v.ts, v.amps) for v in live.values()}
    peak = one_minute_peak(readings)
    if db_peak is None:
        assert peak is None
    else:
        assert (peak.axis, peak.ts, peak.amps) == (db_peak["axis_id"], db_peak["ts"], db_peak["peak_amps"])


def test_peak_window_includes_both_ends_and_ties_go_to_the_earlier_reading():
    at = datetime(2022, 10, 17, 12, 1, tzinfo=UTC)
    readings = [
        Reading(robot_id="r", ts=at - timedelta(seconds=60.001), currents={1: 99.0}),  # just outside
        Reading(robot_id="r", ts=at - timedelta(seconds=60), currents={1: 5.0, 2: 8.0}),  # on the edge: in
        Reading(robot_id="r", ts=at - timedelta(seconds=30), currents={1: 8.0, 2: None}),
        Reading(robot_id="r", ts=at, currents={1: 1.0, 2: None}),
    ]
    peak = one_minute_peak(readings)
    assert (peak.axis, peak.amps, peak.ts) == (2, 8.0, at - timedelta(seconds=60))
    assert one_minute_peak([]) is None
    assert one_minute_peak([Reading(robot_id="r", ts=at, currents={1: None})]) is None
