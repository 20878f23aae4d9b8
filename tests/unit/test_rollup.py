"""The per-minute rollup on SQLite: exact under replays, and the queries built on it answer as the raw rows do."""

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select, text

from common.store import queries
from common.store.rollup import minute_stats
from common.store.tables import (
    axes_dim,
    fleet_minute,
    reading_stamps_hour,
    reading_stamps_minute,
    readings_hour,
    readings_minute,
    rollup_progress,
    seed_axes,
)
from consumer_db.migrate import migrate
from consumer_db.rollup_writer import rebuild
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


@pytest.mark.parametrize("seed", [4, 5])
def test_queries_over_hours_answer_as_the_raw_rows_after_replays(engine, seed):
    """The history view's data health reads whole hours from reading_stamps_hour: stops across an hour's
    end and inside its minutes, ranges that start and end inside hours."""
    cases.store_with_replays(engine, cases.readings_over_hours(seed), seed)
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    cases.check_queries_match_raw_rows(engine, cases.hour_ranges)


def test_rebuild_recomputes_the_whole_rollup_from_the_rows(engine):
    """After a load that bypassed the writers (here: every rollup table emptied), ``rebuild`` makes every
    level again, the fleet's and the hours' too, each robot folded up to its newest minute."""
    cases.store_with_replays(engine, cases.readings_over_hours(9), 9)
    with engine.begin() as conn:
        for table in (
            readings_minute,
            readings_hour,
            reading_stamps_minute,
            reading_stamps_hour,
            fleet_minute,
            rollup_progress,
        ):
            conn.execute(table.delete())
        rebuild(conn)
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    cases.check_queries_match_raw_rows(engine, cases.hour_ranges)


def test_data_health_leaves_out_the_rows_of_a_retired_axis(engine):
    """Rows are counted from each minute's total and masks of axes; the rows of an axis no robot has
    active any more are taken off (here axis 4, a row in every reading)."""
    cases.store_with_replays(engine, cases.readings(8), 8)
    with engine.begin() as conn:
        conn.execute(axes_dim.update().where(axes_dim.c.axis_id == 4).values(active=False))
    cases.check_queries_match_raw_rows(engine)
    with engine.connect() as conn:
        health = queries.data_health(conn, robot_id="R1", folded_only=True)[0]
    assert health["axes"] == 3 and 0 < health["rows"] == 3 * health["readings"]


def test_the_migration_backfills_readings_stored_before_it(sqlite_url):
    engine = create_engine(sqlite_url)
    migrate(engine, "0002")
    rows = cases.readings_over_hours(7)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO axes_dim (robot_id, axis_id, label) VALUES ('R1', 1, 'Axis #1'), "
                "('R1', 2, 'Axis #2'), ('R1', 3, 'Axis #3'), ('R1', 4, 'Axis #4'), ('R2', 1, 'Axis #1'), "
                "('R2', 2, 'Axis #2'), ('R2', 3, 'Axis #3'), ('R2', 4, 'Axis #4')"
            )
        )
        # before 0003 nothing kept a rollup: store the rows as a writer of that day did
        for start in range(0, len(rows), 500):
            conn.execute(
                text("INSERT INTO readings_fact (robot_id, axis_id, ts, amps) VALUES (:r, :a, :t, :v)"),
                [
                    {"r": r, "a": a, "t": t.strftime("%Y-%m-%d %H:%M:%S.%f"), "v": v}
                    for r, a, t, v in rows[start : start + 500]
                ],
            )
    migrate(engine)
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    cases.check_queries_match_raw_rows(engine, cases.hour_ranges)
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


def stored(engine, table) -> list[dict]:
    with engine.connect() as conn:
        return cases.stored_rows(conn, table)


def test_minutes_are_folded_once_passed_and_late_times_refold_theirs(engine):
    """Each batch but the first comes before, inside or across what its minutes hold. A minute is folded
    when a reading comes over a minute after its end (fold delay: up to 60 s); a late time refolds its
    minute; the minute not folded yet is read from the raw rows. After every batch the rollup is the
    fresh one."""
    at = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1, 2])
    folded = []
    for seconds in ([40, 50], [10, 20], [45], [5, 55, 130], [125], [135], [30]):
        with engine.begin() as conn:
            insert_readings(conn, [("R1", axis, at(s), float(s)) for s in seconds for axis in (1, 2)])
        cases.check_rollup_is_the_aggregate_of_the_rows(engine)
        folded.append(len(stored(engine, reading_stamps_minute)))
    assert folded == [0, 0, 0, 1, 1, 1, 1]
    [stamps] = stored(engine, reading_stamps_minute)
    assert (stamps["readings"], stamps["first_ts"], stamps["last_ts"], stamps["longest_step_s"]) == (
        8,
        at(5),
        at(55),
        10.0,
    )
    assert [(m["n_rows"], m["sum_amps"]) for m in stored(engine, readings_minute)] == [(8, 255.0)] * 2
    with engine.connect() as conn:
        assert [(m["values"], m["mean_amps"]) for m in queries.resample_1min(conn, robot_id="R1")] == [
            (8, 255.0 / 8)
        ] * 2 + [(3, 130.0)] * 2
        assert queries.data_health(conn, robot_id="R1")[0]["readings"] == 11


def test_a_new_axis_at_a_stored_time_counts_that_time_once(engine):
    at = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1, 2])
        insert_readings(conn, [("R1", 1, at(s), 1.0) for s in (0, 2, 4)])
    with engine.begin() as conn:  # the rest of two stored readings, a new one, and one of the next minute
        insert_readings(conn, [("R1", 2, at(s), 2.0) for s in (2, 4, 6)] + [("R1", 1, at(s), 1.0) for s in (6, 130)])
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    [stamps] = stored(engine, reading_stamps_minute)
    assert (stamps["readings"], stamps["last_ts"], stamps["longest_step_s"]) == (4, at(6), 2.0)
    with engine.connect() as conn:
        assert queries.data_health(conn, robot_id="R1")[0]["readings"] == 5


def test_a_minute_with_null_values_on_one_axis_folds_the_values_of_the_others(engine):
    """min/max/sums of a minute where some readings have no value (NULL) for an axis: they count as rows,
    not as values, and do not blank the aggregates of the values there are."""
    at = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
    batches = [{1: None, 2: 5.0}, {1: -1.0, 2: None}, {1: 3.0, 2: None}, {1: 0.0, 2: -2.0}]
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1, 2])
    for i, currents in enumerate(batches):
        with engine.begin() as conn:
            insert_readings(conn, [("R1", axis, at(2 * i), amps) for axis, amps in currents.items()])
    with engine.begin() as conn:
        insert_readings(conn, [("R1", 1, at(130), 1.0)])  # over a minute later: the first one is folded
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)
    columns = ("n_rows", "n_values", "n_zero", "sum_amps", "sum_sq_amps", "min_amps", "max_amps", "max_active_amps")
    assert [tuple(m[c] for c in columns) for m in stored(engine, readings_minute)] == [
        (4, 3, 1, 2.0, 10.0, -1.0, 3.0, 3.0),
        (4, 2, 0, 3.0, 29.0, -2.0, 5.0, 5.0),
    ]


def test_migration_0015_backfills_the_peaks_times(engine):
    cases.store_with_replays(engine, cases.readings(4), 4)
    cases.check_0015_backfills_peak_ts(engine)


def test_downgrading_to_0003_folds_the_minutes_not_folded_yet(engine):
    cases.store_with_replays(engine, cases.readings(4), 4)
    cases.check_downgrade_to_0003_leaves_the_whole_aggregate(engine)


def test_a_fleet_ticking_together_folds_a_few_robots_per_write(engine):
    """200 robots, one reading each at the same instants every 2 s for 4 minutes, a write per tick: every
    minute gets folded, but spread over the ticks (fold delay 0-60 s per robot), never all at one write."""
    robots = [f"robot-{i:03d}" for i in range(200)]
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=robots, axes=[1])
    folded_per_write, before = [], 0
    for tick in range(120):
        ts = cases.T0 + timedelta(seconds=2 * tick)
        with engine.begin() as conn:
            insert_readings(conn, [(robot, 1, ts, 1.0) for robot in robots])
        now = len(stored(engine, reading_stamps_minute))
        folded_per_write.append(now - before)
        before = now
    assert before >= 200 * 2  # minutes 0 and 1 of every robot, at least
    assert max(folded_per_write) <= 40, folded_per_write
    cases.check_rollup_is_the_aggregate_of_the_rows(engine)


def test_a_fold_between_reading_the_cuts_and_running_the_query_changes_no_answer(engine):
    """A reader reads each robot's folded_until, then builds its query; a writer folds more minutes before
    the query runs. The minutes it adds to the rollup lie past the reader's cut, which reads them raw."""
    at = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=[1])
        insert_readings(conn, [("R1", 1, at(s), float(s)) for s in range(0, 60, 2)])
    with engine.connect() as reader:
        m = minute_stats(reader, robot_id="R1", start=None, end=None)  # nothing folded yet: all raw
        with engine.begin() as writer:
            insert_readings(writer, [("R1", 1, at(s), 1.0) for s in range(60, 240, 2)])
        assert len(stored(engine, readings_minute)) >= 2  # minutes 0 and 1 folded meanwhile
        n_rows = reader.execute(select(func.sum(m.c.n_rows))).scalar_one()
    assert n_rows == 120


def test_window_peaks_from_the_rollup_take_the_first_time_of_a_peak_reached_again(engine):
    """The peak comes from the rollup and its time from the first minute that reached it: a value reached
    twice in a minute, again in later minutes (folded and not), all zeros (peak 0 at every reading), only
    negative currents; ranges that start or end between two times of the peak, inside its minutes."""
    at = lambda s: cases.T0 + timedelta(seconds=s)  # noqa: E731
    peak_at = {30, 34, 200, 410}  # twice in minute 0, then minutes 3 and 6 (the newest: not folded)
    rows = [
        (robot, axis, at(s), amps)
        for robot in ("R1", "R2")
        for s in range(0, 420, 2)
        for axis, amps in ((1, 5.0 if s in peak_at else 1.0), (2, 0.0), (3, -1.0 - (s % 60 != 0)), (4, None))
    ]
    cases.store_with_replays(engine, rows, 11)
    with engine.connect() as conn:
        for start, end in [(None, None), (at(31), None), (at(35), at(409)), (at(35), at(199)), (at(60), at(61))]:
            raw = cases.raw_rows(engine, None, start, end)
            where = {"start": start, "end": end}
            answer = queries.window_peaks(conn, **where)
            cases.assert_close(answer, cases.expected_window_peaks(raw), where)
        assert {(p["axis_id"], p["ts"]) for p in queries.window_peaks(conn, start=at(31))} == {
            (1, at(34)),
            (2, at(32)),
            (3, at(60)),
        }


def test_a_fold_inside_the_running_hour_between_the_cuts_and_the_query_changes_no_answer(engine):
    cases.check_a_fold_inside_the_running_hour_changes_no_answer(engine)


def test_the_running_hour_is_read_from_its_row(engine):
    cases.check_the_running_hour_is_read_from_its_row(engine)
