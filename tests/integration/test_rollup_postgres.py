"""The per-minute rollup on PostgreSQL: exact through COPY, the staging table and replays, and with two
writers of one robot at once (folding, late, one reading split between them) or of two robots folding one
minute of the fleet; the queries built on it answer as the raw rows do."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import case, func, select, text, true

from common.store import queries
from common.store.db import make_engine
from common.store.rollup import STATS, readings_minute_axes_of, readings_minute_stats_of, readings_span_stats_of
from common.store.sqlparts import axes_mask, minute_start
from common.store.tables import readings, readings_fact, readings_minute, rollup_progress, seed_axes
from consumer_db.migrate import migrate
from consumer_db.store import insert_readings
from tests import rollup_cases as cases

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("copy_min_rows", [1, 100_000], ids=["copy", "insert"])
def test_queries_on_the_rollup_answer_as_the_raw_rows_after_replays(pg_engine, copy_min_rows):
    cases.store_with_replays(pg_engine, cases.readings(11), 11, copy_min_rows=copy_min_rows)
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    cases.check_queries_match_raw_rows(pg_engine)


def test_queries_over_hours_answer_as_the_raw_rows_after_replays(pg_engine):
    cases.store_with_replays(pg_engine, cases.readings_over_hours(13), 13, copy_min_rows=1)
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    cases.check_queries_match_raw_rows(pg_engine, cases.hour_ranges)


def test_the_migration_backfills_readings_stored_before_it(pg_url):
    pg_engine = make_engine(pg_url, log_version=False)
    migrate(pg_engine, "0002")
    rows = cases.readings_over_hours(5)
    with pg_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO axes_dim (robot_id, axis_id, label) SELECT r, a, 'Axis #' || a "
                "FROM unnest(ARRAY['R1', 'R2']) r, generate_series(1, 4) a"
            )
        )
        conn.execute(
            text("INSERT INTO readings_fact (robot_id, axis_id, ts, amps) VALUES (:r, :a, :t, :v)"),
            [{"r": r, "a": a, "t": t, "v": v} for r, a, t, v in rows],
        )
    migrate(pg_engine)
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    cases.check_queries_match_raw_rows(pg_engine, cases.hour_ranges)
    pg_engine.dispose()


def test_migration_0015_backfills_the_peaks_times(pg_engine):
    cases.store_with_replays(pg_engine, cases.readings(12), 12, copy_min_rows=1)
    cases.check_0015_backfills_peak_ts(pg_engine)


def test_downgrading_to_0003_folds_the_minutes_not_folded_yet(pg_engine):
    cases.store_with_replays(pg_engine, cases.readings(12), 12, copy_min_rows=1)
    cases.check_downgrade_to_0003_leaves_the_whole_aggregate(pg_engine)


AT = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
# stored before, the first writer's rows (its transaction held open), the second writer's: other axes or
# times, so the two meet only at the robot's rollup_progress row
RACES = {
    "second folds the first's minute": ([], [("R1", 1, AT(10), 2.0)], [("R1", 2, AT(130), 4.0)]),
    "second is late": (
        [("R1", 1, AT(30), 1.0), ("R1", 1, AT(130), 1.0)],
        [("R1", 1, AT(140), 2.0)],
        [("R1", 2, AT(10), 4.0)],
    ),
    "first is late": (
        [("R1", 1, AT(30), 1.0), ("R1", 1, AT(130), 1.0)],
        [("R1", 1, AT(10), 2.0)],
        [("R1", 2, AT(250), 4.0)],
    ),
    "one reading, two axes": (
        [("R1", 1, AT(10), 1.0)],
        [("R1", 1, AT(70), 2.0)],
        [("R1", 2, AT(70), 4.0), ("R1", 1, AT(200), 1.0)],
    ),
}


@pytest.mark.parametrize(("before", "first", "second"), list(RACES.values()), ids=list(RACES))
def test_a_second_writer_of_a_robot_waits_for_the_first_at_its_progress_row(pg_engine, before, first, second):
    """What keeps two writers of one robot exact: the second one's lock of the robot's rollup_progress row
    waits until the first's transaction ends; then it folds or refolds from readings that include the
    first's, and from the first's folded_until."""
    with pg_engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1, 2])
        insert_readings(conn, before)
    _second_waits_for_first(pg_engine, first, second)
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    with pg_engine.connect() as conn:
        folded = conn.execute(text("SELECT count(*) FROM reading_stamps_minute")).scalar_one()
        readings = queries.data_health(conn, robot_id="R1")[0]["readings"]
    assert folded >= 1
    assert readings == len({ts for _, _, ts, _ in before + first + second})


def test_writers_of_other_robots_folding_one_minute_take_turns_at_the_fleets_row(pg_engine):
    """Each writer recomputes the fleet's minute from every robot's rows it can see: without waiting for
    the first one's commit, the second would write the minute without the first one's robot."""
    with pg_engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1", "R2"], axes=[1, 2])
        insert_readings(conn, [("R1", 1, AT(10), 1.0), ("R2", 1, AT(12), 3.0)])
    _second_waits_for_first(pg_engine, [("R1", 1, AT(130), 2.0)], [("R2", 2, AT(132), 4.0)])
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    with pg_engine.connect() as conn:
        fleet = queries.fleet_minute_means(conn)
    assert [(r["minute"], r["axis_id"], r["mean_amps"]) for r in fleet] == [(AT(0), 1, 2.0)]


def _second_waits_for_first(pg_engine, first: list[tuple], second: list[tuple]) -> None:
    """Two writers: the first stores its rows and holds its transaction open; the second must still be
    waiting a second later, and gets through once the first commits."""
    first_stored, release = threading.Event(), threading.Event()

    def hold_open() -> None:
        with pg_engine.begin() as conn:
            insert_readings(conn, first)
            first_stored.set()
            release.wait(10)

    def follow() -> None:
        first_stored.wait(10)
        with pg_engine.begin() as conn:
            insert_readings(conn, second)

    with ThreadPoolExecutor(2) as pool:
        held, following = pool.submit(hold_open), pool.submit(follow)
        assert first_stored.wait(10)
        with pytest.raises(FutureTimeout):
            following.result(timeout=1.0)  # waiting on the row the open transaction locked
        release.set()
        held.result(10), following.result(10)


@pytest.mark.parametrize("copy_min_rows", [1, 100_000], ids=["copy", "insert"])
def test_two_writers_of_the_same_robots_at_once_leave_the_rollup_exact(pg_engine, copy_min_rows):
    """Two threads, each its own connection, write the same overlapping batches, each in its own shuffled
    order, a transaction a batch, starting together: in-order, late and duplicate data race."""
    rng = random.Random(31)
    rows = cases.readings(31)
    batches = [rows[i : i + rng.randint(10, 120)] for i in range(0, len(rows), 40)]
    orders = [rng.sample(batches, len(batches)) for _ in range(2)]
    together = threading.Barrier(2, timeout=30)
    with pg_engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1", "R2"], axes=cases.AXES)

    def writer(order: list[list[tuple]]) -> int:
        stored = 0
        for batch in order:
            together.wait()
            with pg_engine.begin() as conn:
                stored += insert_readings(conn, batch, copy_min_rows=copy_min_rows)
        return stored

    with ThreadPoolExecutor(2) as pool:
        stored = sum(f.result(120) for f in [pool.submit(writer, order) for order in orders])
    sent = {(r, a, ts) for batch in batches for r, a, ts, _ in batch}
    assert stored == len(sent)  # each row stored by exactly one of them
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    cases.check_queries_match_raw_rows(pg_engine)


def test_the_sinks_batches_fold_into_the_exact_rollup_and_leave_the_planner_as_it_was(pg_engine):
    """The sink's path (Sink.write: one stored row per reading, COPY, the minute fold hashed with sorts off
    for that one statement): batches in and out of order, a late one among them, fold the same rollup as
    the raw rows give; and the transaction goes on with sorts on, as the other statements were planned."""
    from common.wire.bus import Message
    from common.wire.schemas import Reading
    from consumer_db.axislock import AxisLock
    from consumer_db.decode import Topics
    from consumer_db.rollup_writer import add
    from consumer_db.sink import Sink
    from consumer_db.store import write_wide_readings

    migrate(pg_engine)
    rows = cases.readings(17)
    readings: dict = {}
    for robot, axis, ts, amps in rows:
        readings.setdefault((robot, ts), {})[axis] = amps
    messages = [
        Message("readings", 0, i, robot.encode(), Reading(robot_id=robot, ts=ts, currents=currents).to_bytes())
        for i, ((robot, ts), currents) in enumerate(sorted(readings.items(), key=lambda item: item[0][1]))
    ]
    sink = Sink(pg_engine, AxisLock(pg_engine, list(cases.AXES)), Topics("readings", "alerts", "dead"), copy_min_rows=1)
    third = len(messages) // 3
    late, rest = messages[third : 2 * third], messages[:third] + messages[2 * third :]
    for start in range(0, len(rest), 150):
        assert sink.write(rest[start : start + 150]).rejected == 0
    assert sink.write(late).rows_new == sum(len(readings[(m.key.decode(), _ts(m))]) for m in late)
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    cases.check_queries_match_raw_rows(pg_engine)

    prepared = sink.prepare(messages[:10])
    with pg_engine.begin() as conn:
        conn.execute(text("TRUNCATE readings, rollup_progress"))
        add(conn, write_wide_readings(conn, prepared.rows, copy_min_rows=1, text=prepared.copy, batch=prepared.new))
        assert conn.execute(text("SHOW enable_sort")).scalar() == "on"


def _ts(message):
    from common.wire.schemas import Reading

    return Reading.from_bytes(message.value).ts


def test_a_hashed_fold_that_fails_raises_its_own_error(pg_engine):
    """A fold the database refuses (here a division by zero) must reach the sink as the content error it is,
    for the batch to be written message by message: not as the error of resetting the plan settings on the
    aborted transaction, which the sink would take for an outage and retry for ever."""
    from sqlalchemy import literal_column, select
    from sqlalchemy.exc import DataError

    from common.store.rollup import M
    from consumer_db.rollup_writer import _upsert

    migrate(pg_engine)
    with pytest.raises(DataError, match="division by zero"), pg_engine.begin() as conn:
        _upsert(conn, M, select(M).where(literal_column("1 / 0") == 1), hashed=True)


def test_the_one_minute_peak_is_the_first_row_of_the_tie_rule(pg_engine):
    """Across robots and axes: the highest current, then the earlier time, then the lower robot id (as Python
    orders text: "R2" before "r1", whatever the database's collation) and axis; each window's answer is the
    least raw row of the window in that order. Robots "R2" and "r1" store the same values at the same times,
    so every peak is a tie between them."""
    rows = [
        (robot, axis, ts, amps)
        for robot in ("R2", "r1")
        for _, axis, ts, amps in cases.readings(17)
        if ts.second % 3  # drop some readings: steps of several seconds, windows with fewer rows
    ]
    with pg_engine.begin() as conn:
        seed_axes(conn, robot_ids=["R2", "r1"], axes=cases.AXES)
        insert_readings(conn, rows)
    stamps = sorted({r[2] for r in rows})
    with pg_engine.connect() as conn:
        for at in stamps[::37]:
            window = [r for r in rows if at - timedelta(seconds=60) <= r[2] <= at and r[3] is not None]
            robot, axis, ts, amps = min(window, key=lambda r: (-r[3], r[2], r[0], r[1]))
            peak = queries.one_minute_peak(conn, at=at)
            assert (peak["robot_id"], peak["axis_id"], peak["ts"], peak["peak_amps"]) == (robot, axis, ts, amps), at
            assert peak["label"] == f"Axis #{axis}" and peak["window_end"] == at


def test_a_fold_inside_the_running_hour_between_the_cuts_and_the_query_changes_no_answer(pg_engine):
    cases.check_a_fold_inside_the_running_hour_changes_no_answer(pg_engine)


def test_the_running_hour_is_read_from_its_row(pg_engine):
    cases.check_the_running_hour_is_read_from_its_row(pg_engine)


def test_the_tails_masks_of_axes_are_the_views_whatever_the_array(pg_engine):
    """Data health's raw minutes take their rows and masks of axes from each reading's bits and the places of
    the NULLs in its array (rollup.readings_minute_axes_of), never unnesting it: the same as the readings_fact
    view gives, for readings with a value on an axis without its bit, a bit past the array's end, an empty
    array, an array that does not start at 1, and several patterns in one minute."""
    stored = [  # (seconds after T0, axes bits, amps)
        (0, 0b1110, "{1.5,NULL,0}"),
        (2, 0b1110, "{2.5,NULL,0}"),
        (4, 0b1010, "{NULL,5,NULL}"),  # a value on axis 2, which the reading has no row of
        (6, 0b100010, "{3,NULL}"),  # bit 5 past the end of the array
        (8, 0b10, "{}"),
        (61, 0b110, "[3:4]={7,NULL}"),  # element 1 (axis 1) is 7, whatever the subscript
        (63, 0b11110, "{NULL,NULL,NULL,NULL}"),
        (65, 0b11110, "{NULL,4,NULL,0}"),
    ]
    with pg_engine.begin() as conn:
        conn.execute(text("SELECT ensure_readings_partitions(:t, :t)"), {"t": cases.T0})
        for seconds, axes, amps in stored:
            conn.execute(
                text(
                    "INSERT INTO readings (robot_id, ts, axes, amps) VALUES ('R1', :ts, :axes, CAST(:amps AS float8[]))"
                ),
                {"ts": cases.T0 + timedelta(seconds=seconds), "axes": axes, "amps": amps},
            )
        R = readings_fact
        minute = minute_start(R.c.ts).label("minute")
        through_view = select(
            R.c.robot_id,
            minute,
            func.count().label("n_rows"),
            axes_mask(R.c.axis_id).label("axes_stored"),
            axes_mask(case((R.c.amps.is_not(None), R.c.axis_id))).label("axes_with_values"),
        ).group_by(R.c.robot_id, minute)
        expected = conn.execute(through_view.order_by(minute)).all()
        axes = readings_minute_axes_of([true()]).subquery()
        got = conn.execute(select(axes).order_by(axes.c.minute)).all()
    assert [tuple(r) for r in got] == [tuple(r) for r in expected]
    assert [r.n_rows for r in expected] == [3 + 3 + 2 + 1 + 0, 2 + 4 + 4]  # the cases above, by hand


def test_window_peaks_take_the_first_time_at_the_peak_in_the_tail_or_before(pg_engine):
    """The unfolded tail is grouped per robot and axis, its peak's time looked up among its readings: the first
    reading at the range's peak, whether that is in a folded minute with the same value in the tail too, only
    in the tail (twice), or in a partial minute at the range's start."""
    seconds = range(0, 1500, 2)  # R1, 25 minutes: the last one or two not folded
    tail = {1496, 1498}
    peaks = {"folded and in the tail": {180, 1496}, "in the tail twice": {1496, 1498}, "at the start": {1, 200}}
    for name, at_peak in peaks.items():
        with pg_engine.begin() as conn:
            conn.execute(
                text(
                    "TRUNCATE readings, readings_minute, reading_stamps_minute, readings_hour, "
                    "reading_stamps_hour, fleet_minute, rollup_progress, axes_dim"
                )
            )
        times = sorted(set(seconds) | at_peak)
        cases.store_one_robot(pg_engine, times, amps=lambda s, at=at_peak: 9.0 if s in at else float(s % 7))
        with pg_engine.connect() as conn:
            folded_until = conn.execute(select(rollup_progress.c.folded_until)).scalar_one()
            assert folded_until <= cases.T0 + timedelta(seconds=min(tail))  # the tail is raw
            for start in (None, cases.T0 + timedelta(seconds=0.5)):
                rows = cases.raw_rows(pg_engine, None, start, None)
                got = queries.window_peaks(conn, start=start)
                cases.assert_close(got, cases.expected_window_peaks(rows), (name, start))


def test_one_write_of_late_and_new_minutes_over_midnight_folds_the_exact_rollup(pg_engine):
    """A write's fold reads every range of its robots in one statement (``rollup_writer.SPANS``): late
    minutes scattered among the folded ones, touching each other and the robot's ``folded_until``, and the
    minutes passed after it, of two robots, across two day partitions. The ranges are joined first, so no
    row is folded twice; a replay of the write changes nothing."""
    migrate(pg_engine)
    rng = random.Random(23)
    midnight = datetime(2024, 3, 2, tzinfo=UTC)
    rows = [
        (robot, axis, midnight + timedelta(seconds=2 * step), rng.choice([None, 0.0, round(rng.uniform(-5, 5), 3)]))
        for robot in ("R1", "R2")
        for step in range(-300, 300)
        for axis in cases.AXES
    ]
    end_of_first = midnight + timedelta(minutes=7)
    first = [row for row in rows if row[2] < end_of_first and rng.random() < 0.6]
    taken = set(first)
    second = [row for row in rows if row not in taken]
    with pg_engine.begin() as conn:
        assert insert_readings(conn, first, copy_min_rows=1) == len(first)
    with pg_engine.begin() as conn:
        folded = dict(conn.execute(text("SELECT robot_id, folded_until FROM rollup_progress")).all())
        assert all(midnight - timedelta(minutes=10) < until < end_of_first for until in folded.values())
        assert insert_readings(conn, second, copy_min_rows=1) == len(second)
        days = conn.execute(text("SELECT count(DISTINCT date_trunc('day', minute)) FROM readings_minute")).scalar()
        assert days == 2
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    with pg_engine.begin() as conn:
        before = conn.execute(text("SELECT * FROM readings_minute ORDER BY 1, 2, 3")).all()
        assert insert_readings(conn, second, copy_min_rows=1) == 0
        assert conn.execute(text("SELECT * FROM readings_minute ORDER BY 1, 2, 3")).all() == before
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)


def test_the_writers_minute_fold_from_the_arrays_is_the_views_to_the_bit(pg_engine):
    """The fold's minute rows from ``readings``' arrays (a reading's minute and time computed once per reading)
    are exactly those of the same aggregates over the readings_fact view (the fold before), floats compared with
    ``==``: over readings with NULLs, zeros, a tie at the peak, a bit of ``axes`` unset under a value (no row: the
    view leaves it out), a bit set past the array's end (no row either) and arrays of other lengths."""
    from common.store.rollup import minute_rollup_of, readings_minute_rollup_of
    from consumer_db.rollup_writer import _hashed

    start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    rng = random.Random(23)
    rows = []
    for k in range(400):
        width = rng.choice([3, 5, 5, 5])
        amps = [rng.choice([None, 0.0, round(rng.uniform(-2, 9), 3)]) for _ in range(width)]
        axes = sum(1 << axis for axis in range(1, width + 1) if rng.random() > 0.1) | rng.choice([0, 1 << 7])
        rows.append(("R1" if k % 3 else "R2", start + timedelta(seconds=1.7 * k), axes, amps))
    rows.append(("R1", start + timedelta(seconds=1.7 * 3 + 0.25), 0b1110, [9.5, 9.5, 9.5]))  # ties at the peak
    rows.append(("R1", start + timedelta(seconds=1.7 * 6 + 0.25), 0b1110, [9.5, 9.5, 9.5]))
    rows.sort(key=lambda row: row[1])  # stored in time order, as the writers store them: sums added alike
    with pg_engine.begin() as conn:
        conn.execute(
            text("SELECT ensure_readings_partitions(CAST(:ts AS timestamptz), CAST(:ts AS timestamptz))"), {"ts": start}
        )
        conn.execute(
            text("INSERT INTO readings (robot_id, ts, axes, amps) VALUES (:robot, :ts, :axes, :amps)"),
            [{"robot": r, "ts": ts, "axes": axes, "amps": amps} for r, ts, axes, amps in rows],
        )
    with pg_engine.connect() as conn:
        # computed as the writer folds them (rollup_writer._hashed): grouped by hashing, each group's currents
        # added in the order they are read
        conn.exec_driver_sql("SET enable_sort = off")
        got = []
        for query in (minute_rollup_of([true()], arrays=True), readings_minute_rollup_of([true()])):
            fold = _hashed(query).subquery()
            got.append(conn.execute(select(fold).order_by(fold.c.robot_id, fold.c.minute, fold.c.axis_id)).all())
    assert len(got[0]) > 20 and any(r.peak_ts is None for r in got[0])
    assert got[1] == got[0]


def test_the_readers_raw_parts_have_the_rollups_column_types(pg_engine):
    # PostgreSQL flattens a UNION ALL only when its parts' column types are the same: the raw parts' counts
    # (bigints there) must come in the rollup's integer columns, or the rollup parts are read apart from them
    def types(query) -> dict:
        with pg_engine.connect() as conn:
            result = conn.execute(select(query.subquery()).limit(0))
            return {column[0]: column[1] for column in result.cursor.description if column[0] in STATS}

    stored = types(select(*(readings_minute.c[name] for name in STATS)))
    for raw_part in (
        readings_minute_stats_of([]),
        readings_span_stats_of([], STATS, per="hour"),
        readings_span_stats_of([], STATS, per=None),
    ):
        assert types(raw_part) == stored


@pytest.mark.parametrize("per", ["hour", "minute"])
def test_the_raw_part_per_hour_or_minute_is_the_raw_rows_grouped_by_it(pg_engine, per):
    # the raw part of span_stats per hour (or minute: window peaks, whose look-up of a peak's time then stays
    # inside one minute) computes each reading's hour once, in a subquery of its own: the same groups and
    # aggregates as the raw rows grouped by robot, hour (minute) and axis, over ranges across hours' ends
    truncated = {"hour": dict(minute=0, second=0, microsecond=0), "minute": dict(second=0, microsecond=0)}[per]
    rows = cases.readings_over_hours(17)
    cases.store_with_replays(pg_engine, rows, 17, copy_min_rows=1)
    at = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
    for low, high in ((at(0), at(4 * 3600)), (at(3599.5), at(7261.25)), (at(3000.75), at(3700))):
        raw = cases.raw_rows(pg_engine, None, low, high)
        expected = {}
        for robot, axis, ts, amps in raw:
            group = expected.setdefault((robot, ts.replace(**truncated), axis), [])
            group.append((ts, amps))
        part = readings_span_stats_of([readings.c.ts >= low, readings.c.ts <= high], STATS, per=per).subquery()
        with pg_engine.connect() as conn:
            got = conn.execute(select(part).order_by(part.c.robot_id, part.c.minute, part.c.axis_id)).mappings().all()
        assert [(r["robot_id"], r["minute"], r["axis_id"]) for r in got] == sorted(expected)
        for row in got:
            group = expected[(row["robot_id"], row["minute"], row["axis_id"])]
            values = [amps for _, amps in group if amps is not None]
            cases.assert_close(
                dict(row),
                {
                    **dict(row),
                    "n_rows": len(group),
                    "n_values": len(values),
                    "n_zero": values.count(0.0),
                    "sum_amps": sum(values) if values else None,
                    "sum_sq_amps": sum(v * v for v in values) if values else None,
                    "min_amps": min(values, default=None),
                    "max_amps": max(values, default=None),
                    "max_active_amps": max((v for v in values if v != 0), default=None),
                    # where window peaks looks a peak's time up: the group's own hour or minute
                    "peak_minute": row["minute"],
                    "peak_until": row["minute"] + {"hour": timedelta(hours=1), "minute": timedelta(minutes=1)}[per],
                },
                (low, high, row["robot_id"], row["minute"], row["axis_id"]),
            )


def test_the_long_range_readers_plan_without_parallel_workers_for_their_transaction_only(pg_engine):
    cases.store_with_replays(pg_engine, cases.readings_over_hours(3), 3, copy_min_rows=1)
    with pg_engine.connect() as conn:
        default = conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar()
        conn.rollback()
        for read in (queries.window_peaks, queries.axis_summary, queries.resample_hourly):
            read(conn)
            assert conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() == "0"
            conn.rollback()
            assert conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() == default != "0"
            conn.rollback()


def test_a_fold_of_many_robots_reads_only_their_ranges_and_folds_the_same_rows(pg_engine):
    """A sink's batches of 40 robots: the fold reads each robot's range on its own, through the primary key
    (joined to the ranges, the planner scanned the whole day's partition while it was small), and folds the
    very rows the join did: the minute and stamp folds of the same ranges, both ways, equal to the bit; the
    rollup the batches left is the aggregate of the raw rows."""
    from common.store.rollup import M, minute_axes_of, readings_minute_rollup_of, stamp_stats_of
    from common.store.tables import readings
    from common.wire.bus import Message
    from common.wire.schemas import Reading
    from consumer_db.axislock import AxisLock
    from consumer_db.decode import Topics
    from consumer_db.rollup_writer import _each_span, _hashed, _in_spans, _span_folds, _span_params, _upsert_statement
    from consumer_db.sink import Sink

    migrate(pg_engine)
    rng = random.Random(41)
    robots = [f"R{n:02d}" for n in range(40)]
    start = cases.T0 + timedelta(seconds=7)
    sent = []  # the fleet's readings in time order, as the sink gets them: every robot every 2 s, for 8 minutes
    for step in range(240):
        for robot in robots:
            currents = {axis: cases._amps(rng, axis) for axis in cases.AXES}
            sent.append(Reading(robot_id=robot, ts=start + timedelta(seconds=2 * step), currents=currents))
    messages = [Message("readings", 0, i, r.robot_id.encode(), r.to_bytes()) for i, r in enumerate(sent)]
    sink = Sink(pg_engine, AxisLock(pg_engine, list(cases.AXES)), Topics("readings", "alerts", "dead"))
    for begin in range(0, len(messages), 1500):
        assert sink.write(messages[begin : begin + 1500]).rejected == 0
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)

    params = _span_params([(robot, start + timedelta(minutes=1), start + timedelta(minutes=5)) for robot in robots])
    joined, each = [_in_spans(readings, "ts")], _each_span(readings, "ts")
    axes = minute_axes_of([_in_spans(M, "minute")])
    folds = [
        (readings_minute_rollup_of(joined), readings_minute_rollup_of([], stored=each)),
        (stamp_stats_of(joined, axes=axes, stored=readings), stamp_stats_of([], axes=axes, stored=each)),
    ]
    with pg_engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE readings")
        for name in ("minutes of each range", "stamps of each range"):
            table, query, hashed = _span_folds()[name]
            sql = _upsert_statement("postgresql", table, query, hashed=hashed).compile(dialect=conn.dialect)
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {sql.string}", sql.params | params).scalars())
            assert "Seq Scan on readings_p" not in plan and "Scan using readings_p20240301_pkey" in plan, plan
        conn.exec_driver_sql("SET enable_sort = off")  # as the writer groups the minutes (_hashed)
        for by_join, by_range in folds:
            got = [
                conn.execute(select(f).order_by(*f.c), params).all()
                for f in (_hashed(by_join).subquery(), _hashed(by_range).subquery())
            ]
            assert len(got[0]) > 40 and got[1] == got[0]


def test_the_hourly_resample_is_the_raw_rows_grouped_per_hour_to_the_bit(pg_engine):
    """Every row and value of ``resample_hourly`` is what one GROUP BY over the raw rows gives, exactly (each
    current a multiple of 1/8, so every sum is exact whatever its order): closed hours from their rows, the
    running hour from its row, the minutes folded since and the unfolded tail, ranges cut inside minutes and
    hours, the fleet and one robot, a robot that stopped in an earlier hour, an axis without a value."""
    rng = random.Random(23)
    ends = {"R1": 8700, "R2": 8653, "R3": 5000}  # seconds after T0; R3 stopped in the second hour
    rows = [
        (robot, axis, cases.T0 + timedelta(seconds=s + 0.25 * n), amps)
        for n, (robot, end) in enumerate(ends.items())
        for s in range(0, end, 2)
        for axis, amps in zip(
            cases.AXES, (rng.randrange(-16, 160) / 8, rng.choice([0.0, 1.5, None]), 0.0, None), strict=True
        )
    ]
    with pg_engine.begin() as conn:
        seed_axes(conn, robot_ids=list(ends), axes=cases.AXES)
    for minute in range(0, 146, 3):  # written in time order, 3 minutes a transaction, as the sink folds
        batch = [r for r in rows if minute * 60 <= (r[2] - cases.T0).total_seconds() < (minute + 3) * 60]
        with pg_engine.begin() as conn:
            insert_readings(conn, batch)
    with pg_engine.connect() as conn:
        running = cases.running_hours(conn)
        folded_until = dict(conn.execute(select(rollup_progress.c.robot_id, rollup_progress.c.folded_until)).all())
    # the state a reader meets: R1 and R2 in their third hour, its row behind the minutes folded since, a tail
    for robot in ("R1", "R2"):
        hour, held = running[robot]
        assert hour == cases.T0 + timedelta(hours=2) and held < folded_until[robot], (robot, hour, held)
        assert folded_until[robot] < cases.T0 + timedelta(seconds=ends[robot] - 2), robot
    at = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
    ranges = [(None, None), (at(95.5), None), (None, at(7200)), (at(3599.75), at(8640.5)), (at(7261), None)]
    by_hour = text(
        "SELECT robot_id, date_trunc('hour', ts) AS hour, axis_id, sum(amps) / NULLIF(count(amps), 0) AS mean_amps,"
        " max(amps) AS max_amps, CAST(count(amps) AS INTEGER) AS values FROM readings_fact"
        " WHERE (CAST(:robot AS text) IS NULL OR robot_id = :robot)"
        " AND (CAST(:start AS timestamptz) IS NULL OR ts >= :start)"
        " AND (CAST(:end AS timestamptz) IS NULL OR ts <= :end)"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    with pg_engine.connect() as conn:
        for robot_id in (None, "R2"):
            for start, end in ranges:
                got = queries.resample_hourly(conn, robot_id=robot_id, start=start, end=end)
                conn.rollback()
                raw = conn.execute(by_hour, {"robot": robot_id, "start": start, "end": end}).mappings().all()
                want = [{**row, "axis_id": int(row["axis_id"])} for row in raw]
                assert [[(k, type(v), v) for k, v in row.items()] for row in got] == [
                    [(k, type(v), v) for k, v in row.items()] for row in want
                ], (robot_id, start, end)
                assert any(row["values"] == 0 for row in got) and any(row["mean_amps"] for row in got)
