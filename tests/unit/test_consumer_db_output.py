"""consumer_db query output: the same JSON as before, one row per line, written by the C encoder; every
format written row by row as the answer comes."""

import enum
import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from consumer_db.output import FORMATS, TABLE_PAGE, cell, render, write

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
    """A big answer is never held whole: when a row is asked for, the rows before it are already out; the text
    table's, a page at a time (its first page sizes the columns), up to its page's first row."""
    out, written_before = io.StringIO(), {}

    def rows():
        for i in range(2 * TABLE_PAGE + 20):
            written_before[i] = out.getvalue()
            yield {"robot_id": f"R{i}", "amps": float(i)}

    write(out, rows(), {}, fmt)
    asked = 2 * TABLE_PAGE + 10
    last_out = 2 * TABLE_PAGE - 1 if fmt == "table" else asked - 1
    assert re.search(rf"\bR{last_out}\b", written_before[asked])
    assert not re.search(rf"\bR{last_out + 1}\b", written_before[asked])
    assert len(out.getvalue().splitlines()) == 2 * TABLE_PAGE + 20 + {"table": 2, "csv": 1, "json": 2}[fmt]


def test_the_table_sizes_its_columns_on_its_first_page_and_widens_them_for_a_longer_cell_later():
    rows = [{"robot_id": "R1", "amps": 1.0}] * TABLE_PAGE + [{"robot_id": "robot-long", "amps": 2.0}] * 2
    lines = render(rows, {}, "table").splitlines()
    assert lines[0] == "robot_id  amps" and lines[2] == "R1        1.000"
    assert lines[-1] == lines[-2] == "robot-long  2.000"


def test_the_table_of_a_small_answer_reads_as_written_by_hand():
    rows = [
        {"robot_id": "robot-001", "amps": 1.25, "n": 3, "note": None, "at": datetime(2024, 1, 1, 3, 56, tzinfo=UTC)},
        {"robot_id": "r2", "amps": None, "n": 12, "note": "12", "at": None},
    ]
    assert render(rows, {}, "table") == (
        "robot_id   amps   n   note  at\n"
        "---------  -----  --  ----  ------------------------\n"
        "robot-001  1.250   3        2024-01-01T03:56:00.000Z\n"
        "r2                12    12\n"
    )


def per_cell_table(rows: list[dict]) -> str:
    """The text table as it was written before (up to branch slowcmd20): cell by cell, each cell's text made by
    ``cell`` and parsed as a float for its alignment, the widths from the first page and widened by a longer
    cell later from its own line on. The reference the paged writer's output is held to."""
    if not rows:
        return "(no rows)\n"
    names = list(rows[0])
    texts = [[cell(row.get(name), for_table=True) for name in names] for row in rows]
    widths = [max(len(name), *(len(r[i]) for r in texts[:TABLE_PAGE])) for i, name in enumerate(names)]

    def numeric(text):
        try:
            float(text)
        except ValueError:
            return False
        return True

    def line(values):
        for i, value in enumerate(values):
            widths[i] = max(widths[i], len(value))
        return (
            "  ".join(v.rjust(w) if numeric(v) else v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
            + "\n"
        )

    head = line(names)
    return head + line(["-" * w for w in widths]) + "".join(map(line, texts))


class Colour(enum.Enum):
    RED = "1"


# Every kind of value an answer holds or might: NULLs, floats (NaN-free: a NaN's text is the same either way),
# ints and a bool, times with milliseconds and microseconds, text that needs escaping elsewhere (quotes, a line
# break, a tab, a comma, non-ASCII, spaces at its ends), text that reads as a number (right-aligned), lists,
# a Decimal, an enum, and columns that mix kinds.
VARIED = [
    {
        "robot_id": 'R"1\n',
        "ts": datetime(2022, 10, 17, 12, 18, 23, 660000, tzinfo=UTC),
        "amps": 1.25,
        "n": 7,
        "mixed": 3,
        "text": "12",
        "axes": [1, 2.5],
        "flag": True,
        "empty": None,
        "other": Decimal("1.50"),
    },
    {
        "robot_id": "robot-002",
        "ts": datetime(2022, 10, 17, 12, 18, 25, 123456, tzinfo=UTC),
        "amps": None,
        "n": -40000,
        "mixed": 0.5,
        "text": "a,b\tc",
        "axes": [],
        "flag": False,
        "empty": None,
        "other": Colour.RED,
    },
    {
        "robot_id": "ünïcode ",
        "ts": None,
        "amps": -1234567.891,
        "n": None,
        "mixed": "1e3",
        "text": " 7 ",
        "axes": ["x"],
        "flag": None,
        "empty": None,
        "other": "nan",
    },
    {
        "robot_id": "",
        "ts": datetime(2024, 1, 1, tzinfo=UTC),
        "amps": 0.0,
        "n": 0,
        "mixed": None,
        "text": "1_000",
        "axes": [3.0],
        "flag": 1,
        "empty": None,
        "other": "-0.5",
    },
]


def _pages_that_widen(kinds_change: bool) -> list[dict]:
    """Over two pages: the columns widen on the second and third page (a longer robot, a bigger number), and
    with ``kinds_change`` a column holds another kind of value from the second page on."""
    rows = []
    for i in range(2 * TABLE_PAGE + 7):
        robot = f"robot-{i:03d}" + ("-long" * (i // TABLE_PAGE))
        value = float(i) * 10 ** (i // TABLE_PAGE * 3) if i % 5 else None
        note = ("x" * (i % 7)) if kinds_change and i >= TABLE_PAGE else i % 7
        rows.append({"robot_id": robot, "amps": value, "note": note, "at": datetime(2024, 1, 1, 0, i % 60, tzinfo=UTC)})
    return rows


@pytest.mark.parametrize(
    "rows",
    [VARIED, VARIED * (TABLE_PAGE // 2 + 3), _pages_that_widen(False), _pages_that_widen(True), []],
    ids=["varied", "varied-over-two-pages", "widening", "widening-kinds-change", "none"],
)
def test_the_table_is_the_one_written_cell_by_cell(rows):
    assert render(rows, {}, "table") == per_cell_table(rows)


def test_the_table_with_side_tables_is_the_one_written_cell_by_cell():
    gaps = [{"robot_id": "R2", "start": VARIED[0]["ts"], "seconds": 12.5}]
    expected = per_cell_table(VARIED) + "\ngaps:\n" + per_cell_table(gaps) + "\nnone:\n(no rows)\n"
    assert render(VARIED, {"gaps": gaps, "none": []}, "table") == expected
