"""consumer_db query --format json: the same JSON as before, one row per line, written by the C encoder."""

import json
from datetime import UTC, datetime

from consumer_db.output import render

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
