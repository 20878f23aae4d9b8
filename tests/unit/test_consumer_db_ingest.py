"""Bulk ingest on SQLite: schema lock, OK nulls, bad rows to rejected_readings, re-runs add nothing."""

import csv
import logging
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.ingest import _parent_pid, _stat_fields, logged_phases
from common.csvio.controller_csv import CsvOptions
from common.store.rollup import floor_minute
from common.store.tables import axes_dim, readings_fact, rejected_readings, seed_axes
from consumer_db.cli import main
from consumer_db.ingest import PHASES, IngestOptions, _minutes_of, ingest_csv
from tests.phrase_fixture import migrated_sqlite  # noqa: F401 - a fixture

CSV = (
    '"Trait","Axis #1","Axis #2","Axis #3","Axis #15","Time"\n'
    '"current",0,1.5,,9,"2022-10-17T12:18:23.660Z"\n'
    '"current",2.25,abc,0,9,"2022-10-17T12:18:25.472Z"\n'
    '"current",3,4,5,9,"2022-10-17T14:18:27.000+02:00"\n'
    "\n"
    '"current",,,,,"2022-10-17T12:18:29.000Z"\n'
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture
def engine(migrated_sqlite):
    return migrated_sqlite


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "robot-export.csv"
    path.write_text(CSV)
    return path


def stored(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            select(readings_fact.c.ts, readings_fact.c.axis_id, readings_fact.c.amps).order_by(
                readings_fact.c.ts, readings_fact.c.axis_id
            )
        ).all()


def test_ingest_stores_every_good_row_once_and_rejects_the_bad_one(engine, export):
    options = IngestOptions(CsvOptions("R9", [1, 2, 3]), chunk_rows=2)
    first = ingest_csv(engine, export, options)
    again = ingest_csv(engine, export, options)
    assert (first.readings, first.rows_new, first.rows_seen, first.rejected) == (3, 9, 0, 1)
    assert (again.readings, again.rows_new, again.rows_seen, again.rejected) == (3, 0, 9, 1)
    assert stored(engine) == [
        (utc("2022-10-17T12:18:23.660Z"), 1, 0.0),
        (utc("2022-10-17T12:18:23.660Z"), 2, 1.5),
        (utc("2022-10-17T12:18:23.660Z"), 3, None),
        (utc("2022-10-17T12:18:27Z"), 1, 3.0),
        (utc("2022-10-17T12:18:27Z"), 2, 4.0),
        (utc("2022-10-17T12:18:27Z"), 3, 5.0),
        (utc("2022-10-17T12:18:29Z"), 1, None),
        (utc("2022-10-17T12:18:29Z"), 2, None),
        (utc("2022-10-17T12:18:29Z"), 3, None),
    ]
    with engine.connect() as conn:
        rejected = conn.execute(
            select(
                rejected_readings.c.source,
                rejected_readings.c.line,
                rejected_readings.c.raw,
                rejected_readings.c.reason,
                rejected_readings.c.robot_id,
            )
        ).all()
    assert rejected == [
        (
            "robot-export.csv",
            3,
            '"current",2.25,abc,0,9,"2022-10-17T12:18:25.472Z"',
            "Axis #2: 'abc' is not a number",
            "R9",
        )
    ]


def test_a_file_without_a_time_column_is_stamped_alike_on_every_run(engine, tmp_path):
    path = tmp_path / "no-time.csv"
    path.write_text('"Trait","Axis #1","Axis #2"\n"current",1,2\n"current",3,4\n')
    os.utime(path, (1_666_000_000, 1_666_000_000))
    options = IngestOptions(CsvOptions("R9", [1, 2], tick_seconds=2.0))
    first = ingest_csv(engine, path, options)
    time.sleep(1.05 - time.time() % 1)  # the next wall-clock second: the clock must not matter
    again = ingest_csv(engine, path, options)
    assert (first.rows_new, again.rows_new, again.rows_seen) == (4, 0, 4)
    t0 = datetime.fromtimestamp(1_666_000_000, UTC)
    assert [ts for ts, _, _ in stored(engine)] == [t0, t0, t0 + timedelta(seconds=2), t0 + timedelta(seconds=2)]


def test_the_axes_dim_of_a_known_robot_is_the_lock(engine, export):
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=["R9"], axes=[1, 2])
    ingest_csv(engine, export, IngestOptions(CsvOptions("R9", [1, 2, 3])))
    assert {axis for _, axis, _ in stored(engine)} == {1, 2}
    with engine.connect() as conn:
        assert conn.execute(select(axes_dim.c.axis_id).where(axes_dim.c.robot_id == "R9")).scalars().all() == [1, 2]


def test_start_row_and_limit_pick_a_slice(engine, export):
    report = ingest_csv(engine, export, IngestOptions(CsvOptions("R9", [1, 2, 3]), start_row=2, limit=1))
    assert report.readings == 1 and {ts for ts, _, _ in stored(engine)} == {utc("2022-10-17T12:18:27Z")}


def test_real_export_slice_matches_the_file(engine, real_export):
    report = ingest_csv(engine, real_export, IngestOptions(CsvOptions("RMBR4-2"), limit=300))
    assert (report.readings, report.rows_new, report.rejected) == (300, 300 * 14, 0)
    with open(real_export, newline="") as f:
        lines = list(csv.reader(f))[1:301]
    rows = stored(engine)
    for line, axis in ((0, 1), (150, 2), (299, 3), (299, 9)):
        want = float(lines[line][axis]) if lines[line][axis] else None
        assert (utc(lines[line][15]), axis, want) in rows


def test_cli_ingest_prints_a_summary(engine, export, sqlite_url, capsys, monkeypatch):
    monkeypatch.setenv("AXES", "1-3")
    assert (
        main(["--database-url", sqlite_url, "ingest", "--csv", str(export), "--robot-id", "R7", "--no-progress"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("robot-export.csv: 3 readings -> 9 rows new, 0 already stored; 1 rejected")
    assert "rejected 1x: Axis #2: 'abc' is not a number" in out


@pytest.mark.parametrize("robot", ["robot 7", "r" * 65, "'; drop table readings;--"])
def test_cli_ingest_as_a_robot_id_the_policy_refuses_is_one_clear_error_that_stores_nothing(
    engine, export, capsys, robot
):
    """Before, every row of the file became a rejected row "robot id ... does not match ROBOT_ID_PATTERN" (a
    100,000-row export: 100,000 of them) and the refused id was seeded into axes_dim, a robot of its own in
    data health."""
    url = engine.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "ingest", "--csv", str(export), "--robot-id", robot, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "ROBOT_ID_PATTERN" in err and "Traceback" not in err
    with engine.connect() as conn:
        assert conn.execute(select(axes_dim.c.robot_id).where(axes_dim.c.robot_id == robot)).all() == []
        assert conn.execute(select(rejected_readings)).all() == []
    assert stored(engine) == []


@pytest.mark.parametrize(
    "option",
    [
        ["--limit", "-1"],  # read nothing, "0 readings"
        ["--limit", "0"],
        ["--start-row", "-5"],  # read as 0
        ["--backwards-tolerance", "-5"],  # refused rows whose time went forward
        ["--backwards-tolerance", "nan"],  # a traceback
        ["--tick-seconds", "nan"],  # a traceback
        ["--tick-seconds", "inf"],
        ["--tick-seconds", "-2"],
        ["--tick-seconds", "0"],  # read as TICK_SECONDS
    ],
)
def test_cli_ingest_refuses_a_count_or_time_that_means_nothing_and_stores_nothing(engine, export, capsys, option):
    url = engine.url.render_as_string(hide_password=False)
    argv = ["--database-url", url, "ingest", "--csv", str(export), "--robot-id", "R7", "--no-progress", *option]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's refusal
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and option[0] in err and "Traceback" not in err, err
    assert stored(engine) == []


def test_cli_ingest_takes_a_tolerance_past_the_calendar_as_any_step_back(engine, tmp_path, capsys):
    """Infinity (or 1e300) stopped the reader with an OverflowError: it tolerates any step back, as 9,999 years do."""
    path = tmp_path / "back.csv"
    path.write_text("Trait,Axis #1,Time\ncurrent,1.5,2024-06-01T00:00:00Z\ncurrent,2.5,2022-01-01T00:00:00Z\n")
    url = engine.url.render_as_string(hide_password=False)
    for tolerance in ("inf", "1e300"):
        argv = ["--database-url", url, "ingest", "--csv", str(path), "--robot-id", "R7", "--no-progress"]
        assert main([*argv, "--backwards-tolerance", tolerance]) == 0
        assert "Traceback" not in capsys.readouterr().err
    assert [amps for _, _, amps in stored(engine) if amps is not None] == [2.5, 1.5]
    assert main([*argv, "--backwards-tolerance", "1e7"]) == 0  # 116 days: the step back of 2.4 years is refused
    assert "time goes backwards" in capsys.readouterr().out


def test_a_second_row_of_the_same_time_with_other_values_is_a_conflict_record(engine, tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text(
        "Trait,Axis #1,Time\n"
        "current,1.5,2022-10-17T12:00:00Z\n"
        "current,1.5,2022-10-17T12:00:00Z\n"  # the same reading again: harmless
        "current,7.5,2022-10-17T12:00:00Z\n"  # other values at the same time: a conflict, kept
        "current,2.5,2022-10-17T12:00:02Z\n"
    )
    report = ingest_csv(engine, path, IngestOptions(CsvOptions("R9", [1])))
    assert (report.readings, report.rejected, report.reasons) == (3, 1, {"conflict": 1})
    with engine.connect() as conn:
        line, reason = conn.execute(select(rejected_readings.c.line, rejected_readings.c.reason)).one()
    assert line == 4 and "axis 1: stored 1.5, this one 7.5" in reason
    assert [amps for _, _, amps in stored(engine)] == [1.5, 2.5]


def test_a_progress_bar_counts_every_record_and_changes_nothing(engine, export, capsys):
    report = ingest_csv(engine, export, IngestOptions(CsvOptions("R9", [1, 2, 3]), chunk_rows=2), progress=True)
    assert (report.readings, report.rows_new, report.rejected) == (3, 9, 1)
    assert "4/5" in capsys.readouterr().err  # 4 records of the 5 lines after the header (one blank)


def test_the_report_says_where_its_time_went_and_the_log_line_gives_it_back(engine, export, caplog):
    caplog.set_level(logging.INFO, logger="consumer_db.ingest")
    report = ingest_csv(engine, export, IngestOptions(CsvOptions("R9", [1, 2, 3]), chunk_rows=2))
    assert list(report.phases) == list(PHASES) and min(report.phases.values()) >= 0
    main_thread = sum(report.phases[name] for name in ("start", "parse", "partitions", "waiting for a writer"))
    assert 0 < main_thread <= report.seconds
    assert report.phases["parse"] > 0 and report.phases["COPY"] > 0 and report.phases["fold"] > 0
    said = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("ingested "))
    read_back = logged_phases(f"2026-12-06 05:00:00,000 INFO consumer_db.ingest: {said}")
    assert read_back == pytest.approx(report.phases, abs=0.0005)


def test_a_blocks_minutes_are_those_of_its_readings_in_any_order():
    rng = random.Random(3)
    start = datetime(2022, 10, 17, 23, 58, tzinfo=UTC)
    ahead = [start + timedelta(seconds=2.3 * i) for i in range(200)]
    shuffled = rng.sample(ahead, len(ahead))  # steps back and forth over minute starts, past midnight
    for times in (ahead, shuffled, [start, start, start + timedelta(minutes=1)], []):
        assert _minutes_of(times) == {floor_minute(ts) for ts in times}


def test_the_benchmark_reads_a_process_parent_and_times_from_proc():
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc")
    assert _parent_pid(os.getpid()) == os.getppid()
    before = _stat_fields(Path(f"/proc/{os.getpid()}"))
    sum(i * i for i in range(3_000_000))  # some CPU of this process's own
    after = _stat_fields(Path(f"/proc/{os.getpid()}"))
    assert after[13] + after[14] > before[13] + before[14]  # user + system, in clock ticks
