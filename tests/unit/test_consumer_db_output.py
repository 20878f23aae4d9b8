"""consumer_db query output: the same JSON as before, one row per line, written by the C encoder; every
format written row by row as the answer comes."""

import io
import json
from datetime import UTC, datetime

import pytest

from consumer_db.output import FORMATS, TABLE_PAGE, render, write

ROWS = [
    {"robot_id": 'R"1\n', "ts": datetime(2022, 10, 17, 12, 18, 23, 660000, tzinfo=UTC), "amps": 1.25, "axes": [1, 2]},
    {"robot_id": "R2", "ts": datetime(2022, 10, 17, 12, 18, 25, 123456, tzinfo=UTC), "amps": None, "axes": []},
]


def test_json_rows_parse_to_the_rows_with_times_as_iso_utc():
    assert json.loads(render(ROWS, {}, "json")) == [
        {"robot_id": 'R"1\n', "ts": "2022-10-17T12:18:23.660Z", "amps": 1.25, "axes": [1, 2]},
        {"robot_id": "R2", "ts": "2022-10-17T12:18:25.123456Z", "amps": None, "axes": []},
    ]


def test_json_writes_one_row_per_line_and_escapes_text_inside_it():
    lines = render(ROWS, {}, "json").splitlines()
    assert lines[0] == "[" and lines[-1] == "]"
    assert [json.loads(line.rstrip(",")) for line in lines[1:-1]] == json.loads(render(ROWS, {}, "json"))


def test_json_with_side_tables_nests_them_beside_the_rows():
    out = json.loads(render(ROWS[:1], {"gaps": ROWS[1:], "none": []}, "json"))
    assert list(out) == ["rows", "gaps", "none"]
    assert out["gaps"][0]["robot_id"] == "R2" and out["rows"][0]["amps"] == 1.25 and out["none"] == []


def test_json_of_no_rows_is_an_empty_array():
    assert json.loads(render([], {}, "json")) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_writes_the_rows_as_they_come(fmt):
    """A big answer is never held whole: when a row is asked for, the rows before it are already out (the
    text table's after its first page, which sizes the columns)."""
    out, written_before = io.StringIO(), {}

    def rows():
        for i in range(TABLE_PAGE + 20):
            written_before[i] = out.getvalue()
            yield {"robot_id": f"R{i}", "amps": float(i)}

    write(out, rows(), {}, fmt)
    assert f"R{TABLE_PAGE + 9}" in written_before[TABLE_PAGE + 10]
    assert f"R{TABLE_PAGE + 10}" not in written_before[TABLE_PAGE + 10]
    assert len(out.getvalue().splitlines()) == TABLE_PAGE + 20 + {"table": 2, "csv": 1, "json": 2}[fmt]


def test_the_table_sizes_its_columns_on_its_first_page_and_widens_them_for_a_longer_cell_later():
    rows = [{"robot_id": "R1", "amps": 1.0}] * TABLE_PAGE + [{"robot_id": "robot-long", "amps": 2.0}] * 2
    lines = render(rows, {}, "table").splitlines()
    assert lines[0] == "robot_id  amps" and lines[2] == "R1        1.000"
    assert lines[-1] == lines[-2] == "robot-long  2.000"
