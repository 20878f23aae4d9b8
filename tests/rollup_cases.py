"""The rollup-based queries against answers computed here, in Python, from the raw rows of readings_fact:
used by tests/unit/test_rollup.py (SQLite) and tests/integration/test_rollup_postgres.py.

The data: robots with irregular steps (gaps inside a minute and across minutes), idle zeros, negative
currents, an axis that is always NULL; written batch by batch out of time order (later batches fill in
minutes already stored), some batches replayed whole or in part, as the sink does after a crash.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from alembic import command
from sqlalchemy import Connection, Engine, and_, func, inspect, or_, select, text, true

from common.store import queries
from common.store.rollup import (
    RUNNING_HOUR_STEP,
    STAMPS,
    STATS,
    floor_minute,
    minute_rollup_of,
    open_rows,
    span_stats,
    stamp_hours_of,
    stamp_stats,
    stamp_stats_of,
)
from common.store.sqlparts import hour_start
from common.store.tables import (
    axes_of,
    fleet_minute,
    reading_stamps_hour,
    reading_stamps_minute,
    readings_fact,
    readings_hour,
    readings_minute,
    rollup_progress,
    seed_axes,
)
from consumer_db.migrate import alembic_config
from consumer_db.rollup_writer import fold_delay
from consumer_db.store import insert_readings

T0 = datetime(2024, 3, 1, 8, 0, 0, tzinfo=UTC)
AXES = (1, 2, 3, 4)
GAP_S = 10.0
TICK_S = 2.0


def readings(seed: int) -> list[tuple]:
    """(robot, axis, ts, amps) rows of two robots over ~20 minutes."""
    rng = random.Random(seed)
    rows = []
    for robot in ("R1", "R2"):
        ts = T0 + timedelta(seconds=rng.uniform(0, 30))
        while ts < T0 + timedelta(minutes=20):
            rows += [(robot, axis, ts, _amps(rng, axis)) for axis in AXES]
            step = rng.choice([2.0, 2.0, 2.0, 1.5, 2.5, 11.0, 25.0, 70.0]) + rng.randrange(1000) / 1e6
            ts += timedelta(seconds=step)
    return rows


def readings_over_hours(seed: int) -> list[tuple]:
    """(robot, axis, ts, amps) rows of two robots over ~3 hours: mostly 2-20 s apart, now and then stopped
    for a few minutes (across an hour's end too) or for 12 s inside a minute; whole minutes with axis 3
    NULL."""
    rng = random.Random(seed)
    rows = []
    for robot in ("R1", "R2"):
        ts = T0 + timedelta(seconds=rng.uniform(0, 30))
        while ts < T0 + timedelta(hours=3):
            rows += [(robot, axis, ts, None if axis == 3 and ts.minute % 7 == 0 else _amps(rng, axis)) for axis in AXES]
            step = rng.choice([2.0] * 6 + [12.0, 20.0, 200.0, 900.0]) + rng.randrange(1000) / 1e6
            ts += timedelta(seconds=step)
    return rows


def _amps(rng: random.Random, axis: int) -> float | None:
    if axis == 4:
        return None  # never carries a value
    return rng.choice([0.0, 0.0, None, round(rng.uniform(-3, 9), 3), round(rng.uniform(0, 20), 6)])


def store_with_replays(engine: Engine, rows: list[tuple], seed: int, copy_min_rows: int = 1000) -> None:
    """Batches in shuffled order, each followed now and then by a replay of itself or of an earlier batch."""
    rng = random.Random(seed)
    batches = [rows[i : i + rng.randint(20, 400)] for i in range(0, len(rows), 200)]
    rng.shuffle(batches)
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1", "R2"], axes=AXES)
    done: list[list[tuple]] = []
    for batch in batches:
        with engine.begin() as conn:
            insert_readings(conn, batch, copy_min_rows=copy_min_rows)
        done.append(batch)
        if rng.random() < 0.4:
            replay = rng.choice(done)
            with engine.begin() as conn:
                assert insert_readings(conn, replay[: rng.randint(1, len(replay))], copy_min_rows=copy_min_rows) == 0


def ranges() -> list[tuple[datetime | None, datetime | None]]:
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    return [
        (None, None),
        (at(95.5), None),
        (None, at(601.25)),
        (at(95.5), at(601.25)),  # partial edge minutes
        (at(120), at(600)),
        (at(120), at(659.999999)),  # on minute boundaries
        (at(130), at(170)),
        (at(130), at(200)),
        (at(5000), at(6000)),  # inside one minute, adjacent ones, empty
    ]


# --- the reference: straight from the raw rows ------------------------------------------------------


def raw_rows(engine: Engine, robot_id, start, end) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(readings_fact.c.robot_id, readings_fact.c.axis_id, readings_fact.c.ts, readings_fact.c.amps)
        ).all()
    return [
        r
        for r in rows
        if (robot_id is None or r[0] == robot_id) and (start is None or r[2] >= start) and (end is None or r[2] <= end)
    ]


def expected_resample(rows) -> list[dict]:
    groups = defaultdict(list)
    for robot, axis, ts, amps in rows:
        groups[(robot, ts.replace(second=0, microsecond=0), axis)].append(amps)
    out = []
    for (robot, minute, axis), amps in sorted(groups.items()):
        values = [a for a in amps if a is not None]
        out.append(
            {
                "robot_id": robot,
                "minute": minute,
                "axis_id": axis,
                "mean_amps": sum(values) / len(values) if values else None,
                "max_amps": max(values, default=None),
                "values": len(values),
            }
        )
    return out


def expected_hourly_resample(rows) -> list[dict]:
    hourly = [(robot, axis, ts.replace(minute=0), amps) for robot, axis, ts, amps in rows]
    return [{"hour" if k == "minute" else k: v for k, v in r.items()} for r in expected_resample(hourly)]


def expected_summary(rows) -> list[dict]:
    groups = defaultdict(list)
    for robot, axis, _, amps in rows:
        groups[(robot, axis)].append(amps)
    out = []
    for (robot, axis), amps in sorted(groups.items()):
        values = [a for a in amps if a is not None]
        active = [a for a in values if a != 0]
        out.append(
            {
                "robot_id": robot,
                "axis_id": axis,
                "label": f"Axis #{axis}",
                "rows": len(amps),
                "non_null": len(values),
                "ok_null_share": (len(amps) - len(values)) / len(amps),
                "idle_share": (len(values) - len(active)) / len(values) if values else None,
                "mean_active_amps": sum(active) / len(active) if active else None,
                "max_active_amps": max(active, default=None),
            }
        )
    return out


def expected_window_peaks(rows) -> list[dict]:
    """Per robot and axis with a value: the largest, and the first time it was reached; highest first."""
    peaks: dict = {}
    for robot, axis, ts, amps in sorted(rows, key=lambda r: r[2]):
        if amps is not None and ((robot, axis) not in peaks or amps > peaks[(robot, axis)][0]):
            peaks[(robot, axis)] = (amps, ts)
    out = [
        {"robot_id": robot, "axis_id": axis, "label": f"Axis #{axis}", "peak_amps": amps, "ts": ts}
        for (robot, axis), (amps, ts) in peaks.items()
    ]
    return sorted(out, key=lambda p: (-p["peak_amps"], p["robot_id"], p["axis_id"]))


def expected_latest_per_axis(rows) -> list[dict]:
    """Per robot and axis, its newest row (a None value included)."""
    newest = {(robot, axis): (ts, amps) for robot, axis, ts, amps in sorted(rows, key=lambda r: r[2])}
    return [
        {"robot_id": robot, "axis_id": axis, "label": f"Axis #{axis}", "ts": ts, "amps": amps}
        for (robot, axis), (ts, amps) in sorted(newest.items())
    ]


def expected_health(rows, locked: dict[str, list[int]]) -> list[dict]:
    out = []
    for robot, axes in sorted(locked.items()):
        mine = [r for r in rows if r[0] == robot]
        stamps = sorted({ts for _, _, ts, _ in mine})
        span = (stamps[-1] - stamps[0]).total_seconds() if stamps else 0.0
        expected = math.floor(span / TICK_S + 1e-9) + 1 if stamps else 0
        gaps = [
            {"start": a, "end": b, "length_s": (b - a).total_seconds()}
            for a, b in pairwise(stamps)
            if (b - a).total_seconds() > GAP_S
        ]
        seen = {axis for _, axis, _, amps in mine if amps is not None}
        out.append(
            {
                "robot_id": robot,
                "first_ts": stamps[0] if stamps else None,
                "last_ts": stamps[-1] if stamps else None,
                "span_s": span,
                "readings": len(stamps),
                "expected_readings": expected,
                "coverage": len(stamps) / expected if expected else None,
                "rows": sum(1 for r in mine if r[1] in axes),
                "expected_rows": expected * len(axes),
                "axes": len(axes),
                "gaps": gaps,
                "gap_count": len(gaps),
                "gap_total_s": sum(g["length_s"] for g in gaps),
                "axes_never_seen": [a for a in axes if a not in seen],
            }
        )
    return out


def assert_close(actual, expected, where) -> None:
    """Equal, floats to 1e-9 relative: a sum of per-minute sums is not added up in the raw rows' order."""
    assert same(actual, expected), f"{where}:\n{actual}\n!=\n{expected}"


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# --- the checks ---------------------------------------------------------------------------------------


def hour_ranges() -> list[tuple[datetime | None, datetime | None]]:
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    return [
        (None, None),
        (at(95.5), None),
        (at(3600), None),
        (None, at(7200)),  # whole hours, and the edges of others
        (at(65 * 60 + 0.5), at(2.5 * 3600 + 7)),
        (at(10 * 60), at(50 * 60)),
        (at(59 * 60), at(61 * 60)),
        (at(2 * 3600), None),  # from the running hour's start, and just after it
        (at(2 * 3600 + 0.5), None),
        (at(2 * 3600 - 20.5), at(3 * 3600 - 0.5)),  # the last hour: no whole hour, the running one inside it
        (at(2 * 3600 - 20.5), at(2 * 3600 + 30)),  # an hour's first minute, no other
    ]


def check_queries_match_raw_rows(engine: Engine, ranges=ranges) -> None:
    with engine.connect() as conn:
        locked = axes_of(conn, active_only=True)
        for robot_id in (None, "R1"):
            for start, end in ranges():
                rows = raw_rows(engine, robot_id, start, end)
                where = {"robot_id": robot_id, "start": start, "end": end}
                assert_close(queries.resample_1min(conn, **where), expected_resample(rows), where)
                assert_close(queries.resample_hourly(conn, **where), expected_hourly_resample(rows), where)
                assert_close(queries.axis_summary(conn, **where), expected_summary(rows), where)
                assert_close(queries.window_peaks(conn, **where), expected_window_peaks(rows), where)
                assert_close(queries.latest_per_axis(conn, **where), expected_latest_per_axis(rows), where)
                up_to_end = raw_rows(engine, robot_id, None, end)
                newest = queries.newest_ts(conn, robot_id=robot_id, end=end)
                assert newest == max((r[2] for r in up_to_end), default=None), where
                health = queries.data_health(conn, **where, gap_threshold_s=GAP_S, tick_seconds=TICK_S)
                mine = {r: a for r, a in locked.items() if robot_id in (None, r)}
                assert_close(health, expected_health(rows, mine), where)
                check_folded_answers(conn, folded_rows(conn, rows, start, end), where, mine)


def folded_rows(conn: Connection, rows: list[tuple], start, end) -> list[tuple]:
    """Of ``rows``, those of the whole minutes inside ``[start, end]`` that are folded."""
    folded_until = dict(conn.execute(select(rollup_progress.c.robot_id, rollup_progress.c.folded_until)).all())
    first = (
        None
        if start is None
        else floor_minute(start) + (timedelta(minutes=1) if start != floor_minute(start) else timedelta())
    )
    last = None if end is None else floor_minute(end)
    return [
        r
        for r in rows
        if floor_minute(r[2]) + timedelta(minutes=1) <= folded_until[r[0]]
        and (first is None or floor_minute(r[2]) >= first)
        and (last is None or floor_minute(r[2]) < last)
    ]


def check_folded_answers(conn: Connection, rows: list[tuple], where: dict, locked: dict[str, list[int]]) -> None:
    """The history view's answers (``folded_only``, the fleet's rollup) against the raw rows they cover."""
    assert_close(queries.resample_1min(conn, **where, folded_only=True), expected_resample(rows), where)
    assert_close(queries.axis_summary(conn, **where, folded_only=True), expected_summary(rows), where)
    health = queries.data_health(conn, **where, gap_threshold_s=GAP_S, tick_seconds=TICK_S, folded_only=True)
    assert_close(health, expected_health(rows, locked), where)
    if where["robot_id"] is None:
        bounds = {"start": where["start"], "end": where["end"]}
        assert_close(queries.fleet_minute_means(conn, **bounds), expected_fleet_means(rows), where)
        assert_close(
            queries.fleet_axis_summary(conn, **bounds), expected_summary([(None, *r[1:]) for r in rows]), where
        )


def expected_fleet_means(rows) -> list[dict]:
    groups = defaultdict(list)
    for r in expected_resample(rows):
        groups[(r["minute"], r["axis_id"])].append(r)
    out = []
    for (minute, axis), parts in sorted(groups.items()):
        means = [p["mean_amps"] for p in parts if p["mean_amps"] is not None]
        out.append(
            {
                "minute": minute,
                "axis_id": axis,
                "mean_amps": sum(means) / len(means) if means else None,
                "max_amps": max((p["max_amps"] for p in parts if p["max_amps"] is not None), default=None),
                "values": sum(p["values"] for p in parts),
            }
        )
    return out


def check_rollup_is_the_aggregate_of_the_rows(engine: Engine) -> None:
    """The stored rollup, row for row, equals the rollup computed afresh from readings_fact for the
    minutes folded; every robot is folded up to the minute its fold delay before its newest reading."""
    R, P = readings_fact, rollup_progress
    with engine.connect() as conn:
        folded_until = dict(conn.execute(select(P.c.robot_id, P.c.folded_until)).all())
        newest = dict(conn.execute(select(R.c.robot_id, func.max(R.c.ts)).group_by(R.c.robot_id)).all())
        assert folded_until.keys() == newest.keys()
        assert all(folded_until[r] >= floor_minute(newest[r] - fold_delay(r)) for r in newest), (folded_until, newest)
        assert_rollup_is_the_aggregate_of(conn, [R.c.robot_id == P.c.robot_id, R.c.ts < P.c.folded_until])
        if conn.dialect.name == "postgresql":
            assert_open_rows_are_the_aggregate_of(conn, [R.c.robot_id == P.c.robot_id, R.c.ts >= P.c.folded_until])
        check_fleet_rollup_is_the_sum_of_the_robots(conn)
        check_hour_rollup_is_the_aggregate_of_the_minutes(conn)


def check_downgrade_to_0003_leaves_the_whole_aggregate(engine: Engine) -> None:
    """0003's writers expected every minute in the rollup; back there, it is the whole aggregate again."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    with engine.connect() as conn:
        assert not inspect(conn).has_table("rollup_progress")
        assert_rollup_is_the_aggregate_of(conn, [true()])


def check_0015_backfills_peak_ts(engine: Engine) -> None:
    """A rollup folded before migration 0015 (down to 0014 drops peak_ts) gets each minute's and hour's
    peak_ts from the raw rows: the first reading time at its max_amps, as the writers fold it since."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0014")
        assert "peak_ts" not in {c["name"] for c in inspect(conn).get_columns("readings_minute")}
        command.upgrade(config, "head")
    check_rollup_is_the_aggregate_of_the_rows(engine)
    with engine.connect() as conn:
        minutes = stored_rows(conn, readings_minute)
    assert minutes and all((m["peak_ts"] is None) == (m["max_amps"] is None) for m in minutes)
    assert all(m["minute"] <= m["peak_ts"] < m["minute"] + timedelta(minutes=1) for m in minutes if m["peak_ts"])


def assert_rollup_is_the_aggregate_of(conn: Connection, filters: list) -> None:
    """The rollup tables, row for row, are the aggregate of the readings_fact rows ``filters`` selects
    (fleet_minute: of readings_minute's rows, compared by check_fleet_rollup_is_the_sum_of_the_robots)."""
    # the minutes' peak_ts by the look-up form (arrays=False): the reference the writer's arrays are held to
    fresh_minutes = minute_rollup_of(filters, arrays=False)
    for table, fresh in ((readings_minute, fresh_minutes), (reading_stamps_minute, stamp_stats_of(filters))):
        keys = [c.name for c in table.primary_key]
        columns = [c["name"] for c in inspect(conn).get_columns(table.name)]  # the schema's of the revision it is at
        computed = fresh.subquery()
        query = select(*(computed.c[c] for c in columns)).order_by(*(computed.c[k] for k in keys))
        again = [dict(r) for r in conn.execute(query).mappings()]
        assert_close(stored_rows(conn, table, columns), again, table.name)
        assert conn.execute(text(f"SELECT count(*) FROM {table.name}")).scalar() == len(again)


# The open rows' sums add the minute's currents in time order, the fold's in the order its plan reads them: the
# same values, perhaps in another order. Held to SUM_ULPS ulp of the largest partial sum there can be (the sum of
# the absolute values, at most sqrt(n * sum of squares)): with currents of both signs the sum itself may be far
# smaller than its terms (an ingest's minute: 1.6 from 22 values of +-5, 10 ulp of 1.6 apart). Every other
# column (counts, minima, maxima, times) is exact, and so are the sums against the currents added in time order
# (``ORDERED_SUMS``): a row is the same whatever writes brought its readings.
SUM_ULPS = 8
SUMS = ("sum_amps", "sum_sq_amps")
ORDERED_SUMS = text(
    "SELECT r.robot_id, date_trunc('minute', r.ts) AS minute, CAST(e.axis_id AS integer), sum(e.amps ORDER BY r.ts), "
    "sum(e.amps * e.amps ORDER BY r.ts) FROM readings r JOIN rollup_progress p ON p.robot_id = r.robot_id "
    "CROSS JOIN LATERAL unnest(r.amps) WITH ORDINALITY AS e(amps, axis_id) "
    "WHERE r.ts >= p.folded_until AND (r.axes >> CAST(e.axis_id AS integer)) & 1 <> 0 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)


def assert_open_rows_are_the_aggregate_of(conn: Connection, filters: list) -> None:
    """open_minute (PostgreSQL), as readings_minute and reading_stamps_minute rows (``open_rows``), is the
    aggregate of the readings_fact rows ``filters`` selects (each robot's from its folded_until on): the same
    rows, none missing and none more, sums within ``SUM_ULPS``."""
    for table, fresh in ((readings_minute, minute_rollup_of(filters, arrays=False)), (reading_stamps_minute, None)):
        columns = (
            ["robot_id", "minute", "axis_id", *STATS, "peak_ts"]
            if fresh is not None
            else ["robot_id", "minute", *STAMPS]
        )
        fresh = fresh if fresh is not None else stamp_stats_of(filters)
        keys = columns[:3] if table is readings_minute else columns[:2]
        computed, kept = fresh.subquery(), open_rows(table).subquery()
        expected = [dict(r) for r in conn.execute(select(*(computed.c[c] for c in columns)).order_by(*keys)).mappings()]
        actual = [dict(r) for r in conn.execute(select(*(kept.c[c] for c in columns)).order_by(*keys)).mappings()]
        assert [[r[k] for k in keys] for r in actual] == [[r[k] for k in keys] for r in expected], table.name
        for got, want in zip(actual, expected, strict=True):
            for column in columns:
                if column in SUMS and got[column] is not None and want[column] is not None:
                    terms = math.sqrt(want["n_values"] * want["sum_sq_amps"])  # >= the sum of |amps|
                    tolerance = SUM_ULPS * math.ulp(max(abs(want[column]), terms, 1.0))
                    assert abs(got[column] - want[column]) <= tolerance, (column, got, want)
                else:
                    assert got[column] == want[column], (column, got, want)
    kept = open_rows(readings_minute).subquery()
    in_time_order = conn.execute(ORDERED_SUMS).tuples().all()
    keys = (kept.c.robot_id, kept.c.minute, kept.c.axis_id)
    assert conn.execute(select(*keys, kept.c.sum_amps, kept.c.sum_sq_amps).order_by(*keys)).tuples().all() == (
        in_time_order
    )


def stored_rows(conn: Connection, table, columns: list[str] | None = None) -> list[dict]:
    """A table's rows (of ``columns``, default all) in key order."""
    query = select(*(table.c[c] for c in columns or table.c.keys())).order_by(*(c.name for c in table.primary_key))
    return [dict(r) for r in conn.execute(query).mappings()]


def running_hours(conn: Connection, table=readings_hour) -> dict[str, tuple[datetime, datetime]]:
    """Per robot, its running hour's row in ``table`` (the hour of its folded_until, when that is not an
    hour's start) and the row's folded_until: after the hour's start, at or before the robot's (the writer
    refolds it every RUNNING_HOUR_STEP, the minutes since are in the minute rows)."""
    folded_until = dict(conn.execute(select(rollup_progress.c.robot_id, rollup_progress.c.folded_until)).all())
    rows = {}
    for robot, until in folded_until.items():
        hour = floor_minute(until - timedelta(minutes=1)).replace(minute=0)
        stored = conn.execute(
            select(table.c.folded_until).where(table.c.robot_id == robot, table.c.hour == hour).distinct()
        ).scalars()
        stored = list(stored)
        if until != until.replace(minute=0) and stored:
            assert len(stored) == 1 and hour < stored[0] <= until, (robot, hour, stored, until)
            assert until - stored[0] <= RUNNING_HOUR_STEP, (robot, stored, until)
            rows[robot] = (hour, stored[0])
    return rows


def check_hour_rollup_is_the_aggregate_of_the_minutes(conn: Connection) -> None:
    """reading_stamps_hour, row for row, is reading_stamps_minute's (and readings_minute's) per hour,
    computed afresh, for every hour of a robot before the hour of its ``folded_until``, and its running
    hour's minutes before that row's ``folded_until``. Its answers against the raw rows: check_folded_answers."""
    P = rollup_progress
    running = running_hours(conn, reading_stamps_hour)
    assert running == running_hours(conn)  # written together
    held = [
        [
            t.c.robot_id == P.c.robot_id,
            t.c.minute < hour_start(P.c.folded_until),
        ]
        for t in (reading_stamps_minute, readings_minute)
    ]
    for robot, (hour, until) in running.items():
        for conds, t in zip(held, (reading_stamps_minute, readings_minute), strict=True):
            conds[1] = or_(conds[1], and_(t.c.robot_id == robot, t.c.minute >= hour, t.c.minute < until))
    fresh = stamp_hours_of(*held).subquery()
    again = [dict(r) for r in conn.execute(select(fresh).order_by(fresh.c.robot_id, fresh.c.hour)).mappings()]
    for r in again:  # computed from the robot's folded_until: the running row's is its own
        run = running.get(r["robot_id"])
        if run is not None and r["hour"] == run[0]:
            r["folded_until"] = run[1]
    assert_close(stored_rows(conn, reading_stamps_hour), again, "reading_stamps_hour")
    check_hours_are_the_sum_of_their_minutes(conn, running)


def hour_start_of(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def check_hours_are_the_sum_of_their_minutes(conn: Connection, running: dict | None = None) -> None:
    """readings_hour, row for row, is readings_minute summed per hour (here, in Python) over each robot's
    hours before the hour of its ``folded_until`` and its running hour's minutes before that row's
    ``folded_until``; ``peak_minute`` the first minute with the hour's max, ``peak_ts`` that minute's;
    ``folded_until`` the hour's end,
    or the running row's."""
    folded_until = dict(conn.execute(select(rollup_progress.c.robot_id, rollup_progress.c.folded_until)).all())
    running = running_hours(conn) if running is None else running
    hours: dict = {}
    for r in stored_rows(conn, readings_minute):
        hour = r["minute"].replace(minute=0)
        assert r["minute"] < folded_until[r["robot_id"]]  # only folded minutes are in the rollup
        if hour >= hour_start_of(folded_until[r["robot_id"]]):
            run_hour, until = running.get(r["robot_id"], (None, None))
            if hour != run_hour or r["minute"] >= until:
                continue  # folded since the running row was
        else:
            until = hour + timedelta(hours=1)
        h = hours.setdefault(
            (r["robot_id"], hour, r["axis_id"]), {"robot_id": r["robot_id"], "hour": hour, "folded_until": until}
        )
        h["axis_id"] = r["axis_id"]
        for k in ("n_rows", "n_values", "n_zero"):
            h[k] = h.get(k, 0) + r[k]
        for k in ("sum_amps", "sum_sq_amps"):
            h[k] = _add(h.get(k), r[k])
        h["min_amps"] = _min(h.get("min_amps"), r["min_amps"])
        h["max_active_amps"] = _max(h.get("max_active_amps"), r["max_active_amps"])
        if r["max_amps"] is not None and (h.get("max_amps") is None or r["max_amps"] > h["max_amps"]):
            # minutes come in order: the first
            h["max_amps"], h["peak_minute"], h["peak_ts"] = r["max_amps"], r["minute"], r["peak_ts"]
        h.setdefault("max_amps", None)
        h.setdefault("peak_minute", None)
        h.setdefault("peak_ts", None)
    columns = [c.name for c in readings_hour.columns]
    expected = [{c: hours[k][c] for c in columns} for k in sorted(hours)]
    assert_close(stored_rows(conn, readings_hour), expected, "readings_hour")


def check_fleet_rollup_is_the_sum_of_the_robots(conn: Connection) -> None:
    """fleet_minute, row for row, is readings_minute summed over robots (computed here, in Python)."""
    sums: dict = {}
    for r in stored_rows(conn, readings_minute):
        f = sums.setdefault(
            (r["minute"], r["axis_id"]),
            {
                "minute": r["minute"],
                "axis_id": r["axis_id"],
                "n_rows": 0,
                "n_values": 0,
                "n_zero": 0,
                "sum_amps": None,
                "max_amps": None,
                "max_active_amps": None,
                "n_robot_means": 0,
                "sum_robot_means": None,
            },
        )
        for k in ("n_rows", "n_values", "n_zero"):
            f[k] += r[k]
        f["sum_amps"] = _add(f["sum_amps"], r["sum_amps"])
        f["max_amps"] = _max(f["max_amps"], r["max_amps"])
        f["max_active_amps"] = _max(f["max_active_amps"], r["max_active_amps"])
        if r["n_values"]:
            f["n_robot_means"] += 1
            f["sum_robot_means"] = _add(f["sum_robot_means"], r["sum_amps"] / r["n_values"])
    assert_close(stored_rows(conn, fleet_minute), [sums[k] for k in sorted(sums)], "fleet_minute")


def _add(a, b):
    return b if a is None else a if b is None else a + b


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


# --- the running hour ----------------------------------------------------------------------------------


def store_one_robot(engine: Engine, seconds: range, amps=lambda s: float(s % 7)) -> None:
    """R1, axis 1: a reading at ``T0 + s`` for each ``s``, in one write."""
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1])
        insert_readings(conn, [("R1", 1, T0 + timedelta(seconds=s), amps(s)) for s in seconds])


def running_hour(conn: Connection) -> tuple[datetime, datetime]:
    """R1's hour of its folded_until, and the folded_until of that hour's row (its minutes folded so far)."""
    row = conn.execute(select(readings_hour.c.hour, readings_hour.c.folded_until).order_by(readings_hour.c.hour.desc()))
    return row.first()


def check_a_fold_inside_the_running_hour_changes_no_answer(engine: Engine) -> None:
    """A reader reads the cuts (R1 folded up to F, inside its running hour: that hour's row holds its
    minutes before F); a writer then folds more minutes of the hour, which refolds the row with a later
    folded_until. The reader's query takes R1's minute rows up to F instead, and the rest raw: every
    reading counted once, in every reader of the hour rows."""
    store_one_robot(engine, range(0, 1200, 2))
    with engine.connect() as reader:
        hour, before = running_hour(reader)
        assert (hour, before.minute > 0) == (T0, True)  # the running hour has its row
        spans = span_stats(reader, robot_id=None, start=None, end=None)
        stamps = stamp_stats(reader, robot_id=None, start=None, end=None)
        folded = stamp_stats(reader, robot_id=None, start=None, end=None, folded_only=True)
        store_one_robot(engine, range(1200, 1500, 2))
        hour, after = running_hour(reader)
        assert (hour, after > before) == (T0, True)  # refolded meanwhile
        assert reader.execute(select(func.sum(spans.c.n_rows))).scalar_one() == 750
        assert reader.execute(select(func.sum(stamps.c.readings))).scalar_one() == 750
        # folded_only: the minutes folded when the query runs, whichever rows hold them
        got = reader.execute(select(func.sum(folded.c.readings))).scalar_one()
        assert got == (after - T0).total_seconds() / 2, (got, after, before)


def check_the_running_hour_is_read_from_its_row(engine: Engine) -> None:
    """Over everything stored, and over the last hour (from inside the hour before: no whole hour), the
    fleet's current hour is its running rows: with the minute rows they hold gone, every answer read through
    the hour rows stays what the raw rows say (only the unfolded tail and the range's first minutes are raw
    or minute rows)."""
    store_one_robot(engine, range(0, 3600 + 1800, 2), amps=lambda s: float((s * 7919) % 1000) / 10)
    with engine.connect() as conn:
        hour, folded_until = running_hour(conn)
        assert (hour, folded_until.minute > 0) == (T0 + timedelta(hours=1), True)
        newest = queries.newest_ts(conn)
    with engine.begin() as conn:
        for table in (readings_minute, reading_stamps_minute):
            gone = table.delete().where(table.c.minute >= hour, table.c.minute < folded_until)
            assert conn.execute(gone).rowcount > 0
    last_hour_from = newest - timedelta(hours=1)
    assert last_hour_from < hour  # the range starts in the hour before
    with engine.connect() as conn:
        locked = axes_of(conn, active_only=True)
        for start, end in ((None, None), (last_hour_from, newest)):
            rows = raw_rows(engine, None, start, end)
            where = {"robot_id": None, "start": start, "end": end}
            assert_close(queries.resample_hourly(conn, **where), expected_hourly_resample(rows), where)
            assert_close(queries.axis_summary(conn, **where), expected_summary(rows), where)
            assert_close(queries.window_peaks(conn, **where), expected_window_peaks(rows), where)
            health = queries.data_health(conn, **where, gap_threshold_s=GAP_S, tick_seconds=TICK_S)
            assert_close(health, expected_health(rows, locked), where)
            folded = queries.data_health(conn, **where, gap_threshold_s=GAP_S, tick_seconds=TICK_S, folded_only=True)
            first = T0 if start is None else floor_minute(start) + timedelta(minutes=1)
            assert folded[0]["readings"] == (folded_until - first).total_seconds() / 2, where
