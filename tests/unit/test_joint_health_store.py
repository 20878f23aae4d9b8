"""Health events into their tables on SQLite (the embedded demo's database): one row per key however often
an event comes, rollups recomputed from the rows below them, the newest forecast kept."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, select

from common.store.joint_health import store_health
from common.store.tables import health_cycles, health_forecast, health_rollup
from common.wire.schemas import AxisForecast, CycleAxis, HealthEvent
from consumer_db.migrate import migrate

T0 = datetime(2026, 3, 1, 23, 58, tzinfo=UTC)


def cycle(start: datetime, a2s: float, deviation: float | None) -> HealthEvent:
    axis = CycleAxis(axis=1, energy_as=10.0, energy_a2s=a2s, peak_amps=5.0, rms_amps=(a2s / 20) ** 0.5, covered_s=20.0)
    axis = axis.model_copy(update={"deviation": deviation})
    return HealthEvent(robot_id="r", kind="cycle", start=start, end=start + timedelta(seconds=20), axes=[axis])


def forecast(at: datetime, days: float | None) -> HealthEvent:
    f = AxisForecast(axis=1, level=0.1, slope_per_day=0.01, limit=0.3, days_left=days)
    return HealthEvent(robot_id="r", kind="forecast", start=at, forecasts=[f])


def rows(engine, table):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(table).order_by(*table.primary_key)).mappings()]


def test_events_twice_are_stored_once_and_rolled_up_by_hour_and_day(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'h.sqlite'}")
    migrate(engine)
    events = [
        cycle(T0, 80.0, 0.1),
        cycle(T0 + timedelta(minutes=1), 180.0, 0.3),
        cycle(T0 + timedelta(minutes=3), 20.0, None),
    ]
    with engine.begin() as conn:
        store_health(conn, events)
    first = (rows(engine, health_cycles), rows(engine, health_rollup))
    with engine.begin() as conn:
        store_health(conn, events[1:] + events[:1])
    assert (rows(engine, health_cycles), rows(engine, health_rollup)) == first
    assert len(first[0]) == 3
    hours = [r for r in first[1] if r["period"] == "hour"]
    days = [r for r in first[1] if r["period"] == "day"]
    # 23:58 and 23:59 in one hour and day, 00:01 in the next of each
    assert [(r["cycles"], r["judged"]) for r in hours] == [(2, 2), (1, 0)]
    assert [r["bucket_start"] for r in days] == [T0.replace(hour=0, minute=0), T0.replace(day=2, hour=0, minute=0)]
    late = hours[0]
    assert late["energy_a2s"] == 260.0 and late["covered_s"] == 40.0 and late["rms_amps"] == (260.0 / 40.0) ** 0.5
    assert late["deviation_median"] == 0.2 and late["deviation_max"] == 0.3
    assert hours[1]["deviation_median"] is None


def test_an_older_forecast_leaves_the_newer_one(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'h.sqlite'}")
    migrate(engine)
    with engine.begin() as conn:
        store_health(conn, [forecast(T0, None), forecast(T0 + timedelta(hours=1), 5.0)])
        store_health(conn, [forecast(T0, 9.0)])
    (row,) = rows(engine, health_forecast)
    assert (row["days_left"], row["updated_at"]) == (5.0, T0 + timedelta(hours=1))
