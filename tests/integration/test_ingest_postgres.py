"""Bulk ingest on a real PostgreSQL, where blocks of good lines go to COPY as columns (``Block``,
``wide_block_text``) and the rest record by record: both kinds in one file, and again, and a file that
contradicts what is stored."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from common.csvio.controller_csv import Block, CsvOptions, read_export_blocks, read_export_rows
from common.store.tables import (
    fleet_minute,
    reading_stamps_hour,
    reading_stamps_minute,
    readings,
    readings_fact,
    readings_hour,
    readings_minute,
    rejected_readings,
    rollup_progress,
    seed_axes,
)
from common.wire.schemas import DeadLetter
from consumer_db.axislock import RobotAxes
from consumer_db.ingest import IngestOptions, ingest_csv
from tests import rollup_cases as cases

pytestmark = pytest.mark.integration

T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)
AXES = [1, 2, 3, 4]


def export(path, seed: int, *, scale: float = 1.0) -> None:
    """600 readings over 20 minutes, axis 3 sometimes empty, axis 4 never given; now and then a bad line."""
    rng = random.Random(seed)
    lines = ["Trait,Axis #1,Axis #2,Axis #3,Axis #4,Time"]
    for i in range(600):
        ts = (T0 + timedelta(seconds=2 * i)).isoformat().replace("+00:00", "Z")
        third = "" if rng.random() < 0.3 else f"{rng.uniform(-5, 5) * scale!r}"
        lines.append(f"current,{rng.uniform(0, 50) * scale!r},{rng.uniform(-9, 9) * scale!r},{third},,{ts}")
        if rng.random() < 0.01:
            lines.append(rng.choice(["current,abc,1,2,,{ts}", "current,1,2", "", "current,1,2,9999,,{ts}"]))
    path.write_text("\n".join(lines).replace("{ts}", "2022-10-17T12:00:00Z") + "\n")


def stored(pg_engine) -> list[tuple]:
    with pg_engine.connect() as conn:
        return conn.execute(select(readings.c.ts, readings.c.axes, readings.c.amps).order_by(readings.c.ts)).all()


def test_blocks_and_careful_stretches_store_each_reading_as_read_row_by_row(pg_engine, tmp_path):
    path = tmp_path / "mixed.csv"
    export(path, seed=7)
    csv = CsvOptions("R1", AXES)
    kinds = {type(item) for item in read_export_blocks(path, csv, block_lines=50)}
    assert kinds == {Block, list}  # the file exercises both ways
    records = list(read_export_rows(path, csv))
    letters = [r for r in records if isinstance(r, DeadLetter)]
    lock = RobotAxes(frozenset(AXES), tuple(AXES))
    expected = [lock.wide(r.robot_id, r.ts, r.currents)[1:] for r in records if not isinstance(r, DeadLetter)]

    options = IngestOptions(csv, chunk_rows=50, copy_min_rows=1)
    first = ingest_csv(pg_engine, path, options)
    again = ingest_csv(pg_engine, path, options)

    assert stored(pg_engine) == expected
    assert (first.readings, first.rejected, first.rows_new) == (600, len(letters), 600 * 4)
    assert (again.readings, again.rejected, again.rows_new, again.rows_seen) == (600, len(letters), 0, 600 * 4)
    with pg_engine.connect() as conn:
        lines = sorted(conn.execute(select(rejected_readings.c.line)).scalars())
        assert lines == sorted(letter.line for letter in letters)  # each bad line once, after two runs
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)


def test_a_block_that_contradicts_the_stored_readings_is_kept_as_conflicts(pg_engine, tmp_path):
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    export(first, seed=3)
    export(second, seed=3, scale=2.0)  # the same times and lines, other values
    options = IngestOptions(CsvOptions("R1", AXES), chunk_rows=100)
    ingest_csv(pg_engine, first, options)
    before = stored(pg_engine)
    report = ingest_csv(pg_engine, second, options)
    assert stored(pg_engine) == before  # the first values stay
    assert report.reasons["conflict"] == 600 and report.rows_new == 0
    with pg_engine.connect() as conn:
        reasons = conn.execute(select(rejected_readings.c.reason).where(rejected_readings.c.source == "second.csv"))
        conflicts = [r for r in reasons.scalars() if r.startswith("conflict")]
    assert len(conflicts) == 600 and report.readings == 0


ROLLUPS = (readings_minute, reading_stamps_minute, readings_hour, reading_stamps_hour, fleet_minute, rollup_progress)


def everything_stored(pg_engine) -> dict:
    """The readings, the dead letters and every rollup table, row for row; but a robot's running hour row:
    refolded every RUNNING_HOUR_STEP of folding, where it stands depends on how the folds fell (a re-run's
    folds move it on), and ``check_rollup_is_the_aggregate_of_the_rows`` checks it against the rows."""
    with pg_engine.connect() as conn:
        letters = select(rejected_readings.c.origin, rejected_readings.c.line, rejected_readings.c.reason)
        return {
            "readings": stored(pg_engine),
            "rejected": sorted(conn.execute(letters).all()),
            **{table.name: [r for r in cases.stored_rows(conn, table) if not running(r)] for table in ROLLUPS},
        }


def running(row: dict) -> bool:
    """An hour rollup's row of a robot's running hour (folded until before the hour's end)."""
    return "folded_until" in row and "hour" in row and row["folded_until"] < row["hour"] + timedelta(hours=1)


def forget_everything(pg_engine) -> None:
    tables = ", ".join(t.name for t in (readings, rejected_readings, *ROLLUPS))
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables}")


@pytest.mark.parametrize("cut", [0, 300, 317])  # nothing, a chunk boundary, inside a chunk
def test_an_ingest_after_a_half_done_one_stores_exactly_what_one_ingest_does(pg_engine, tmp_path, cut):
    path = tmp_path / "export.csv"
    export(path, seed=11)
    options = IngestOptions(CsvOptions("R1", AXES), chunk_rows=50, copy_min_rows=1)
    ingest_csv(pg_engine, path, options)
    once = everything_stored(pg_engine)
    forget_everything(pg_engine)

    half = ingest_csv(pg_engine, path, replace(options, limit=cut)) if cut else None  # stopped part way
    whole = ingest_csv(pg_engine, path, options)
    again = ingest_csv(pg_engine, path, options)

    now = everything_stored(pg_engine)
    assert now.keys() == once.keys()
    for table in now:
        cases.assert_close(now[table], once[table], table)
    assert "conflict" not in whole.reasons and "conflict" not in again.reasons
    assert whole.rows_new + (half.rows_new if half else 0) == 600 * len(AXES)
    assert again.rows_new == 0 and again.rows_seen == whole.rows_new + whole.rows_seen
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)


def test_a_half_done_ingest_with_other_values_makes_conflicts_of_that_half_only(pg_engine, tmp_path):
    """The chunk across the cut holds readings stored alike, stored otherwise and new ones: only those
    stored otherwise are conflicts, the new ones are stored."""
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    export(first, seed=13, scale=2.0)
    export(second, seed=13)
    options = IngestOptions(CsvOptions("R1", AXES), chunk_rows=50, copy_min_rows=1)
    half = ingest_csv(pg_engine, first, replace(options, limit=317))
    before = stored(pg_engine)
    report = ingest_csv(pg_engine, second, options)
    after = stored(pg_engine)
    assert after[: len(before)] == before  # the first values stay
    assert report.reasons["conflict"] == half.readings and report.rows_new == (600 - half.readings) * len(AXES)
    assert len(after) == 600
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)


def test_a_retired_axis_with_values_goes_reading_by_reading(pg_engine, tmp_path):
    with pg_engine.begin() as conn:
        seed_axes(conn, robot_ids=["R1"], axes=AXES)
        conn.exec_driver_sql("UPDATE axes_dim SET active = false WHERE robot_id = 'R1' AND axis_id = 3")
    path = tmp_path / "retired.csv"
    export(path, seed=5)
    report = ingest_csv(pg_engine, path, IngestOptions(CsvOptions("R1", AXES), chunk_rows=50))
    with pg_engine.connect() as conn:
        axes = dict(conn.execute(select(readings.c.axes, func.count()).group_by(readings.c.axes)).all())
    assert set(axes) == {0b10110, 0b11110}  # axes 1, 2, 4 always (4 as NULL), retired 3 only with a value
    assert sum(axes.values()) == report.readings == 600


def test_numbers_in_any_form_float_reads_are_stored_as_float_read_them(pg_engine, tmp_path):
    """A block's plain decimals go to COPY as the file wrote them (``wide_block_text``): PostgreSQL must
    read each to the very double ``float`` did; other forms are formatted again and must too."""
    forms = [
        "007",
        "-0",
        "12.50",
        ".5",
        "5.",
        "-3.000001",
        "000000000000000000012.5",
        "0.1000000000000000055511151231257827",
    ]
    forms += ["1e-3", "2.5E2", " 3.25", "1_000", "+4", "22.12395", "-0.0000001", "0.00000000000000000000001"]
    lines = ["Trait,Axis #1,Axis #2,Axis #3,Axis #4,Time"]
    for i, cell in enumerate(forms):
        ts = (T0 + timedelta(seconds=2 * i)).isoformat().replace("+00:00", "Z")
        plain = forms[i % 7]  # columns of plain decimals only (the first 7), beside one of every form
        lines.append(f'current,{plain},"{cell}",{plain},{plain},{ts}')
    path = tmp_path / "forms.csv"
    path.write_text("\n".join(lines) + "\n")
    csv = CsvOptions("R1", AXES)
    assert {type(item) for item in read_export_blocks(path, csv, block_lines=50)} == {Block}
    report = ingest_csv(pg_engine, path, IngestOptions(csv, chunk_rows=50, copy_min_rows=1))
    assert report.readings == len(forms) and report.rejected == 0
    expected = [
        [float(forms[i % 7]), float(cell), float(forms[i % 7]), float(forms[i % 7])] for i, cell in enumerate(forms)
    ]
    assert [amps for _, _, amps in stored(pg_engine)] == expected


def test_the_benchmarks_floor_with_rollups_stores_what_one_ingest_does(pg_engine, pg_url, tmp_path):
    """``bench.ingest``'s floor ``bare COPY x2 + rollups by bare SQL`` stands for the ingest only if it leaves
    the same stored form: the same readings and every rollup row (its parts cut at a minute, each part's
    minutes folded in one statement, the hours once, from the minute rows, as the writers fold them)."""
    from bench.ingest import AXES as BENCH_AXES
    from bench.ingest import ROBOT, child_copy, format_rows, write_rollup_plan

    path = tmp_path / "export.csv"
    header = ",".join(f"Axis #{axis}" for axis in BENCH_AXES)
    rng = random.Random(5)
    lines = [f"Trait,{header},Time"]
    for i in range(900):  # 30 minutes over midnight, 2 s apart: two day partitions, the floor cut in a minute
        ts = (datetime(2022, 10, 17, 23, 35, 7, tzinfo=UTC) + timedelta(seconds=2 * i)).isoformat()
        cells = [f"{rng.choice([0.0, rng.uniform(-9, 30)])!r}" for _ in range(8)] + [""] * 6
        lines.append(f"current,{','.join(cells)},{ts.replace('+00:00', 'Z')}")
    path.write_text("\n".join(lines) + "\n")
    ingest_csv(pg_engine, path, IngestOptions(CsvOptions(ROBOT, BENCH_AXES), chunk_rows=100, copy_min_rows=1))
    once = everything_stored(pg_engine)
    forget_everything(pg_engine)

    data, plan = tmp_path / "rows.copy", tmp_path / "rollups.json"
    format_rows(path, data)
    write_rollup_plan(data, plan)
    assert child_copy(pg_url, data, 2, plan) == 0

    floor = everything_stored(pg_engine)
    assert floor.keys() == once.keys()
    for table in floor:
        cases.assert_close(floor[table], once[table], table)
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)


def test_the_benchmarks_server_cpu_counts_the_work_of_a_connection_that_has_closed(pg_engine):
    """``bench.ingest``'s ``server CPU s``: what the server spent for a command's connections, read once they
    have closed; a connection's work shows, an idle stretch does not."""
    from sqlalchemy import create_engine, text

    from bench.ingest import ServerCpu

    server = ServerCpu(pg_engine)
    if server.postmaster is None:
        pytest.skip("the PostgreSQL server is not on this machine")
    idle = server.seconds()
    again = server.seconds()
    other = create_engine(pg_engine.url)
    with other.connect() as conn:
        conn.execute(text("SELECT count(*) FROM generate_series(1, 3000000) i WHERE i % 7 = 0"))
    other.dispose()
    busy = server.seconds()
    assert again - idle < 0.1
    assert busy - again >= 0.1


def folding_each_chunk_under_the_turn(monkeypatch) -> None:
    """The ingest's writers without ``minutes_first``: each chunk's minutes computed under the turn at the progress
    row, as the sink computes its batches'."""
    from consumer_db import ingest, rollup_writer

    monkeypatch.setattr(ingest, "add", lambda conn, new, **_: rollup_writer.add(conn, new))


def test_the_real_exports_minutes_computed_before_the_turn_store_what_folding_under_it_does(
    pg_engine, real_export, monkeypatch
):
    """``add(minutes_first=True)``, the ingest's writers: the real export leaves the same readings and rollup rows
    as with every minute computed under the turn. Floats to 1e-9 relative, not to the bit: a minute across two
    chunks sums its readings in the order of the pages they lie on, and the two writers' COPYs of neighbouring
    chunks run at once, so which chunk's pages come first depends on timing, ingest by ingest, either way (in
    four ingests of the export without this change, two left 12 and 13 minute rows differing in the last bit)."""
    from consumer_db import rollup_writer

    options = IngestOptions(CsvOptions("RMBR4-2", list(range(1, 15))))
    taken = []  # whether each chunk's minutes computed ahead were taken under the turn

    def noted(*args):
        taken.append(still_whole(*args))
        return taken[-1]

    still_whole = rollup_writer._still_whole
    with monkeypatch.context() as patched:
        patched.setattr(rollup_writer, "_still_whole", noted)
        ingest_csv(pg_engine, real_export, options)
    ahead = everything_stored(pg_engine)
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    forget_everything(pg_engine)
    with monkeypatch.context() as patched:
        folding_each_chunk_under_the_turn(patched)
        ingest_csv(pg_engine, real_export, options)
    under = everything_stored(pg_engine)
    assert ahead.keys() == under.keys()
    for table in ahead:
        cases.assert_close(ahead[table], under[table], table)
    assert len(ahead["readings_minute"]) == 18_718  # the export's minutes, 14 axes each: not an empty comparison
    assert any(taken)  # the minutes computed ahead were used, not computed again every time


AT = T0 + timedelta(minutes=20, seconds=1)  # inside the minutes the second write computes ahead


def a_reading_comes(conn) -> None:
    conn.execute(readings.insert().values(robot_id="R1", ts=AT, axes=0b10, amps=[5000.0]))


def a_stored_reading_gets_an_axis(conn) -> None:
    """Through readings_fact, as a psql user would: its trigger adds the axis to the reading's row."""
    conn.execute(readings_fact.insert().values(robot_id="R1", axis_id=3, ts=AT, amps=7000.0))


@pytest.mark.parametrize(
    ("before", "meanwhile", "axis", "peak"),
    [(None, a_reading_comes, 1, 5000.0), (a_reading_comes, a_stored_reading_gets_an_axis, 3, 7000.0)],
)
def test_minutes_computed_before_the_turn_are_computed_again_if_their_readings_changed(
    pg_engine, monkeypatch, before, meanwhile, axis, peak
):
    """Another connection commits into the minutes a writer has computed before its turn: a new reading, or an
    axis added to a reading stored before (the count of readings stays). The writer computes them again under
    the turn, and the rollup holds it."""
    from consumer_db import rollup_writer
    from consumer_db.store import write_wide_readings

    lock = RobotAxes(frozenset(AXES), tuple(AXES))
    wide = [lock.wide("R1", T0 + timedelta(seconds=2 * i), {1: float(i), 2: -1.0, 3: None, 4: 0.5}) for i in range(900)]
    with pg_engine.begin() as conn:  # the first 10 minutes, folded: the robot's progress row exists
        seed_axes(conn, robot_ids=["R1"], axes=AXES)
        rollup_writer.add(conn, write_wide_readings(conn, wide[:300], copy_min_rows=1), minutes_first=True)
        if before:
            before(conn)
    computed = rollup_writer._minutes_ahead

    def and_then(conn, new):
        ahead = computed(conn, new)
        assert ahead is not None and ahead.low <= AT < ahead.high
        with pg_engine.begin() as other:
            meanwhile(other)
        return ahead

    monkeypatch.setattr(rollup_writer, "_minutes_ahead", and_then)
    with pg_engine.begin() as conn:
        rollup_writer.add(conn, write_wide_readings(conn, wide[300:], copy_min_rows=1), minutes_first=True)
    cases.check_rollup_is_the_aggregate_of_the_rows(pg_engine)
    with pg_engine.connect() as conn:
        top = select(readings_minute.c.max_amps).where(
            readings_minute.c.minute == T0 + timedelta(minutes=20), readings_minute.c.axis_id == axis
        )
        assert conn.execute(top).scalar_one() == peak
