"""Exports on the phrase fixture, checked cell by cell (CSV pages, summaries, the XLSX read back)."""

import csv
import itertools
from datetime import UTC

import pytest
from openpyxl import load_workbook

from common.defaults import MAX_COUNT
from common.store import queries
from consumer_db import export as export_module
from consumer_db.cli import main
from consumer_db.export import ExportOptions, export
from tests.phrase_fixture import R1, R2, at, fixture_sqlite  # noqa: F401 - a fixture

STAMP = "20240101T000000Z"


@pytest.fixture(scope="module")
def engine(fixture_sqlite):
    return fixture_sqlite


def read_csv(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def num(value) -> str:
    return "" if value is None else repr(value)


def every_row_in_export_order() -> list[list[str]]:
    rows = []
    for robot, readings, axes in (("R1", R1, (1, 2, 3, 4)), ("R2", R2, (1, 2))):
        for s, v in sorted(readings.items()):  # (robot, time, axis): one reading after another
            rows += [
                [robot, str(axis), f"{at(s).isoformat(timespec='milliseconds')[:-6]}Z", num(v[position])]
                for position, axis in enumerate(axes)
            ]
    return rows


def test_export_writes_pages_summaries_and_workbook(engine, tmp_path):
    report = export(engine, ExportOptions(out=tmp_path, page_size=10, sample_rows=4, stamp=STAMP))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [f"readings_{STAMP}_p000{i}.csv" for i in range(1, 5)]
        + [f"axis_summary_{STAMP}.csv", f"latest_20_{STAMP}.csv", f"axiswatch_{STAMP}.xlsx"]
    )
    assert report.rows == 36
    pages = [read_csv(tmp_path / f"readings_{STAMP}_p000{i}.csv") for i in range(1, 5)]
    assert all(page[0] == ["robot_id", "axis_id", "ts", "amps"] for page in pages)
    assert [len(page) - 1 for page in pages] == [10, 10, 10, 6]
    assert [row for page in pages for row in page[1:]] == every_row_in_export_order()

    summary = read_csv(tmp_path / f"axis_summary_{STAMP}.csv")
    assert summary[0] == [
        "robot_id",
        "axis_id",
        "label",
        "rows",
        "non_null",
        "ok_null_share",
        "idle_share",
        "mean_active_amps",
        "max_active_amps",
    ]
    assert summary[3] == ["R1", "3", "Axis #3", "8", "7", "0.125", repr(5 / 7), "0.75", "1.0"]
    assert summary[4] == ["R1", "4", "Axis #4", "8", "0", "1.0", "", "", ""]
    latest = read_csv(tmp_path / f"latest_20_{STAMP}.csv")
    assert latest[0] == ["robot_id", "ts", "Axis #1", "Axis #2", "Axis #3", "Axis #4"]
    assert latest[1] == ["R2", "2022-10-17T12:01:42.000Z", "6.0", "", "", ""]
    assert latest[-1] == ["R1", "2022-10-17T12:00:00.000Z", "0.0", "0.0", "0.0", ""] and len(latest) == 11


def naive_utc(value):
    return value.astimezone(UTC).replace(tzinfo=None)


def test_workbook_read_back_cell_by_cell(engine, tmp_path):
    export(engine, ExportOptions(out=tmp_path, page_size=100, sample_rows=4, stamp=STAMP))
    book = load_workbook(tmp_path / f"axiswatch_{STAMP}.xlsx")
    assert book.sheetnames == ["Readings sample", "Axis summary", "Data health", "Latest 20"]
    sample = [list(r) for r in book["Readings sample"].iter_rows(values_only=True)]
    assert sample == [
        ["robot_id", "ts (UTC)", "Axis #1", "Axis #2", "Axis #3", "Axis #4"],
        ["R1", naive_utc(at(0)), 0, 0, 0, None],
        ["R1", naive_utc(at(6)), 0, 0, 0, None],
        ["R1", naive_utc(at(70)), 1.5, 2, 0, None],
        ["R2", naive_utc(at(100)), 7, 0, None, None],
    ]
    with engine.connect() as conn:
        summary = queries.axis_summary(conn)
        latest = queries.latest_rows(conn, n=20)
    sheet = [list(r) for r in book["Axis summary"].iter_rows(values_only=True)]
    assert sheet[0] == list(summary[0]) and sheet[1:] == [list(r.values()) for r in summary]
    sheet = [list(r) for r in book["Latest 20"].iter_rows(values_only=True)]
    assert sheet[0][:2] == ["robot_id", "ts (UTC)"]
    assert sheet[1:] == [[r["robot_id"], naive_utc(r["ts"]), *list(r.values())[2:]] for r in latest]
    health = [list(r) for r in book["Data health"].iter_rows(values_only=True)]
    assert health[0][:3] == ["robot_id", "first_ts (UTC)", "last_ts (UTC)"] and "gaps" not in health[0]
    assert health[1][:4] == ["R1", naive_utc(at(0)), naive_utc(at(74)), 74]
    assert health[1][-1] == "4"  # axes never seen
    assert book["Readings sample"]["B2"].number_format == "yyyy-mm-dd hh:mm:ss.000"


def test_the_sample_holds_as_many_readings_as_asked_evenly_spread(engine):
    check_sample_sizes(engine)


def check_sample_sizes(engine) -> None:
    """Also run on PostgreSQL (tests/integration/test_consumer_db_postgres.py): integer division in SQL."""
    with engine.connect() as conn:
        everything = [(r["robot_id"], r["ts"]) for r in export_module.sample_readings(conn, rows=10_000)]
        count = len(everything)
        # --sample-rows 10^20: i * rows overflowed PostgreSQL's bigint ("bigint out of range")
        assert [(r["robot_id"], r["ts"]) for r in export_module.sample_readings(conn, rows=MAX_COUNT)] == everything
        for rows in range(1, count + 2):
            picked = [(r["robot_id"], r["ts"]) for r in export_module.sample_readings(conn, rows=rows)]
            assert len(picked) == min(rows, count), f"{rows} asked"
            positions = [everything.index(key) for key in picked]
            steps = {b - a for a, b in itertools.pairwise(positions)}
            assert positions[0] == 0 and (max(steps, default=1) - min(steps, default=1)) <= 1, positions


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        export_module.atomic(tmp_path / "x.csv", broken)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_on_an_empty_database(sqlite_url, tmp_path, capsys):
    assert main(["--database-url", sqlite_url, "migrate"]) == 0
    assert main(["--database-url", sqlite_url, "export", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    files = sorted(p.name.rsplit("_", 1)[0] for p in (tmp_path / "out").iterdir())
    assert files == ["axis_summary", "axiswatch", "latest_20"]
    assert "0 readings rows" in capsys.readouterr().out


def test_cli_export_with_pages_larger_than_a_bigint_is_one_page(sqlite_url, tmp_path, capsys):
    assert main(["--database-url", sqlite_url, "migrate"]) == 0
    huge = str(10**20)
    out = tmp_path / "out"
    argv = ["--database-url", sqlite_url, "export", "--out", str(out), "--no-progress"]
    assert main([*argv, "--page-size", huge, "--sample-rows", huge]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name.rsplit("_", 1)[0] for p in out.iterdir()) == ["axis_summary", "axiswatch", "latest_20"]
