"""The shared CSV reader: every parsing rule of issue 3, on small files written by the tests."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.csvio.controller_csv import (
    Block,
    CsvOptions,
    Row,
    _Reading,
    column_report,
    read_export,
    read_export_blocks,
    read_export_rows,
)
from common.errors import ConfigurationError, CsvFormatError
from common.wire.schemas import MIN_NONZERO_AMPS, DeadLetter, Reading, ReadingPolicy

UTC = UTC
HEADER = '"Trait","Axis #1","Axis #2","Axis #3","Time"'


def write(tmp_path: Path, text: str, name: str = "export.csv", *, encoding: str = "utf-8", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def options(**kw) -> CsvOptions:
    return CsvOptions(**{"robot_id": "R1", "axes": [1, 2, 3], **kw})


def split(items):
    items = list(items)
    readings = [i for i in items if isinstance(i, Reading)]
    letters = [i for i in items if isinstance(i, DeadLetter)]
    return readings, letters


def test_quoted_real_format_reads_currents_time_and_line_numbers(tmp_path):
    path = write(
        tmp_path,
        f'{HEADER}\n"current",1.5,0,22.25,"2022-10-17T12:18:23.660Z"\n"current",0,0,0,"2022-10-17T12:18:25.472Z"\n',
    )
    first, second = read_export(path, options())
    assert first.currents == {1: 1.5, 2: 0.0, 3: 22.25}
    assert first.ts == datetime(2022, 10, 17, 12, 18, 23, 660000, tzinfo=UTC)
    assert (first.row, second.row, first.robot_id) == (2, 3, "R1")
    assert Reading.from_bytes(first.to_bytes()) == first


def test_unquoted_fields_read_the_same(tmp_path):
    quoted = write(tmp_path, f'{HEADER}\n"current",1.5,2,3,"2022-10-17T12:00:00Z"\n', "q.csv")
    plain = write(tmp_path, "Trait,Axis #1,Axis #2,Axis #3,Time\ncurrent,1.5,2,3,2022-10-17T12:00:00Z\n", "p.csv")
    assert list(read_export(quoted, options())) == list(read_export(plain, options()))


def test_empty_cell_is_none_never_zero(tmp_path):
    path = write(tmp_path, f'{HEADER}\n"current",,0,  ,"2022-10-17T12:00:00Z"\n')
    (reading,) = read_export(path, options())
    assert reading.currents == {1: None, 2: 0.0, 3: None}
    assert b'"1":null' in reading.to_bytes()


def test_bom_crlf_and_blank_lines_are_accepted_and_lines_are_file_lines(tmp_path):
    text = f'{HEADER}\n\n"current",1,2,3,"2022-10-17T12:00:00Z"\n\n\n"current",4,5,6,"2022-10-17T12:00:02Z"\n'
    path = write(tmp_path, text, encoding="utf-8-sig", newline="\r\n")
    readings, letters = split(read_export(path, options()))
    assert letters == []
    assert [r.row for r in readings] == [3, 6]
    assert readings[1].currents == {1: 4.0, 2: 5.0, 3: 6.0}


def test_trailing_empty_columns_in_header_and_rows(tmp_path):
    path = write(
        tmp_path, f'{HEADER},,\n"current",1,2,3,"2022-10-17T12:00:00Z",,\n"current",1,2,3,"2022-10-17T12:00:02Z"\n'
    )
    readings, letters = split(read_export(path, options()))
    assert (len(readings), letters) == (2, [])


@pytest.mark.parametrize("name", ["time", "timestamp", "TIME", "Timestamp"])
def test_time_column_may_be_named_time_or_timestamp(tmp_path, name):
    path = write(tmp_path, f"Axis #1,Axis #2,Axis #3,{name}\n1,2,3,2022-10-17T12:00:00Z\n")
    (reading,) = read_export(path, options())
    assert reading.ts == datetime(2022, 10, 17, 12, tzinfo=UTC)


def test_missing_time_column_synthesises_ticks_from_the_start(tmp_path):
    path = write(tmp_path, "Axis #1,Axis #2,Axis #3\n1,2,3\n4,5,6\n7,8,9\n")
    start = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    readings = list(read_export(path, options(start_time=start, tick_seconds=2.5)))
    assert [r.ts for r in readings] == [start + timedelta(seconds=2.5 * i) for i in range(3)]
    later = list(read_export(path, options(start_time=start, tick_seconds=2.5), start_row=2))
    assert later[0].ts == start + timedelta(seconds=5.0), "a skipped row still takes its tick"


def test_naive_start_time_is_read_in_the_configured_zone(tmp_path):
    path = write(tmp_path, "Axis #1\n1\n")
    (reading,) = read_export(path, options(axes=[1], timezone="Europe/Berlin", start_time=datetime(2024, 7, 1, 12)))
    assert reading.ts == datetime(2024, 7, 1, 10, tzinfo=UTC)


def test_naive_and_offset_times_become_utc(tmp_path):
    path = write(
        tmp_path, "Axis #1,Time\n1,2022-10-17 14:00:00\n2,2022-10-17T16:00:00+02:00\n3,2022-10-17T14:00:00.5Z\n"
    )
    berlin = [r.ts for r in read_export(path, options(axes=[1], timezone="Europe/Berlin"))]
    assert berlin == [
        datetime(2022, 10, 17, 12, tzinfo=UTC),
        datetime(2022, 10, 17, 14, tzinfo=UTC),
        datetime(2022, 10, 17, 14, 0, 0, 500000, tzinfo=UTC),
    ]
    assert all(ts.tzinfo is UTC for ts in berlin)
    default = next(iter(read_export(path, options(axes=[1]))))
    assert default.ts == datetime(2022, 10, 17, 14, tzinfo=UTC), "naive means UTC by default"


def test_dst_ambiguous_and_skipped_local_times_are_dead_lettered_with_their_line(tmp_path):
    text = "Axis #1,Time\n1,2022-10-30 01:59:00\n2,2022-10-30 02:30:00\n3,2022-10-30 03:30:00\n4,2023-03-26 02:30:00\n"
    readings, letters = split(read_export(write(tmp_path, text), options(axes=[1], timezone="Europe/Berlin")))
    assert [r.row for r in readings] == [2, 4]
    assert [(d.line, d.raw) for d in letters] == [(3, "2,2022-10-30 02:30:00"), (5, "4,2023-03-26 02:30:00")]
    assert "ambiguous in Europe/Berlin" in letters[0].reason
    assert "does not exist in Europe/Berlin" in letters[1].reason


def test_bad_number_goes_to_dead_letters_and_the_feed_goes_on(tmp_path):
    text = (
        f'{HEADER}\n"current",1,2,3,"2022-10-17T12:00:00Z"\n"current",1,abc,3,"2022-10-17T12:00:02Z"\n'
        '"current",1,2,3,"2022-10-17T12:00:04Z"\n'
    )
    readings, letters = split(read_export(write(tmp_path, text, "feed.csv"), options()))
    assert [r.row for r in readings] == [2, 4]
    (letter,) = letters
    assert (letter.source, letter.line, letter.robot_id) == ("feed.csv", 3, "R1")
    assert letter.raw == '"current",1,abc,3,"2022-10-17T12:00:02Z"'
    assert letter.reason == "Axis #2: 'abc' is not a number"


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity"])
def test_non_finite_current_is_rejected(tmp_path, cell):
    path = write(tmp_path, f"Axis #1,Time\n{cell},2022-10-17T12:00:00Z\n")
    (letter,) = read_export(path, options(axes=[1]))
    assert isinstance(letter, DeadLetter) and "not a finite number" in letter.reason


@pytest.mark.parametrize("cell", ["2022-13-01T00:00:00Z", "yesterday", ""])
def test_bad_time_is_rejected(tmp_path, cell):
    path = write(tmp_path, f"Axis #1,Time\n1,{cell}\n2,2022-10-17T12:00:02Z\n")
    letter, reading = read_export(path, options(axes=[1]))
    assert isinstance(letter, DeadLetter) and letter.line == 2 and letter.reason.startswith("Time: ")
    assert isinstance(reading, Reading)


def test_wrong_field_count_is_rejected(tmp_path):
    text = f'{HEADER}\n"current",1,2,"2022-10-17T12:00:00Z"\n"current",1,2,3,"2022-10-17T12:00:02Z",7\n'
    readings, letters = split(read_export(write(tmp_path, text), options()))
    assert readings == []
    assert [(d.line, d.reason) for d in letters] == [
        (2, "expected 5 fields, found 4"),
        (3, "expected 5 fields, found 6"),
    ]


def test_time_going_backwards_beyond_the_tolerance_is_rejected(tmp_path):
    times = ["12:00:10", "12:00:12", "12:00:11", "12:00:05", "12:00:14"]
    text = "Axis #1,Time\n" + "".join(f"{i},2022-10-17T{t}Z\n" for i, t in enumerate(times))
    strict = split(read_export(write(tmp_path, text), options(axes=[1])))
    assert [r.row for r in strict[0]] == [2, 3, 6]
    assert [d.line for d in strict[1]] == [4, 5] and "backwards by 1 s" in strict[1][0].reason
    tolerant = split(read_export(write(tmp_path, text), options(axes=[1], backwards_tolerance_s=2)))
    assert [r.row for r in tolerant[0]] == [2, 3, 4, 6], "1 s back is within 2 s; 7 s back is not"


def test_schema_lock_extra_columns_ignored_and_missing_axes_null(tmp_path):
    text = "Trait,Axis #1,Axis #3,Axis #15,Robot,Time\ncurrent,1,3,15,x,2022-10-17T12:00:00Z\n"
    path = write(tmp_path, text)
    (reading,) = read_export(path, options())
    assert reading.currents == {1: 1.0, 2: None, 3: 3.0}
    report = column_report(path, options())
    assert (report.axes_read, report.axes_missing, report.extra_axes, report.other_columns) == (
        [1, 3],
        [2],
        [15],
        ["Robot"],
    )


def test_extra_columns_are_reported_once_per_read(tmp_path, caplog):
    path = write(tmp_path, "Axis #1,Axis #15,Time\n1,2,2022-10-17T12:00:00Z\n3,4,2022-10-17T12:00:02Z\n")
    list(read_export(path, options(axes=[1])))
    assert [r.message for r in caplog.records].count(
        "export.csv: axis columns 15 are outside the axis list and ignored"
    ) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("Trait,Time\ncurrent,2022-10-17T12:00:00Z\n", "no axis column"),
        ("Axis #1,Axis 1,Time\n", "appears twice"),
        ("Axis #1,time,timestamp\n", "two time columns"),
    ],
)
def test_unusable_header_is_a_clear_error(tmp_path, text, message):
    with pytest.raises(CsvFormatError, match=message):
        list(read_export(write(tmp_path, text), options()))


def test_a_utf16_export_is_a_clear_error_that_names_the_encoding(tmp_path):
    """Excel's "Unicode text" is UTF-16: read as UTF-8, its header was a list of NUL-riddled cells."""
    path = write(tmp_path, f'{HEADER}\n"current",1,2,3,"2022-10-17T12:00:00Z"\n', encoding="utf-16")
    with pytest.raises(CsvFormatError, match="UTF-16") as raised:
        list(read_export(path, options()))
    assert "\\x00" not in str(raised.value)


@pytest.mark.parametrize(
    "robot_id, policy, reason",
    [
        ("robot 7", ReadingPolicy(), "does not match ROBOT_ID_PATTERN"),
        ("R9", ReadingPolicy(robot_ids_allowed=frozenset({"R1"})), "is not in ROBOT_IDS_ALLOWED"),
    ],
)
def test_options_for_a_robot_the_policy_refuses_are_an_error_before_any_row(robot_id, policy, reason):
    """Every row of the export would be a dead letter for the same reason: one error says it at once."""
    with pytest.raises(ConfigurationError, match=reason):
        options(robot_id=robot_id, policy=policy)


def test_start_row_and_limit_count_data_records(tmp_path):
    text = "Axis #1,Time\n" + "".join(f"{i},2022-10-17T12:00:{i:02d}Z\n" for i in range(10))
    rows = list(read_export(write(tmp_path, text), options(axes=[1]), start_row=3, limit=4))
    assert [r.currents[1] for r in rows] == [3.0, 4.0, 5.0, 6.0]
    assert rows[0].row == 5


def test_fast_path_yields_plain_tuples(tmp_path):
    path = write(tmp_path, "Axis #1,Time\n1.5,2022-10-17T12:00:00Z\nx,2022-10-17T12:00:02Z\n")
    row, letter = read_export_rows(path, options(axes=[1, 2]))
    line, robot, ts, currents = row
    assert type(row) is Row and (line, robot, currents) == (2, "R1", {1: 1.5, 2: None})
    assert ts == datetime(2022, 10, 17, 12, tzinfo=UTC)
    assert isinstance(letter, DeadLetter) and letter.line == 3


# Any finite double but those the policy refuses whatever its settings (a nonzero |current| below MIN_NONZERO_AMPS).
taken = st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda v: not 0 < abs(v) < MIN_NONZERO_AMPS)
currents = st.lists(st.one_of(st.none(), taken), min_size=3, max_size=3)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(currents, min_size=1, max_size=20))
def test_any_written_values_read_back_exactly(tmp_path_factory, rows):
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(["Trait", "Axis #1", "Axis #2", "Axis #3", "Time"])
    start = datetime(2022, 10, 17, tzinfo=UTC)
    for i, values in enumerate(rows):
        writer.writerow(
            ["current", *("" if v is None else repr(v) for v in values), (start + timedelta(seconds=2 * i)).isoformat()]
        )
    path = write(tmp_path_factory.mktemp("h"), out.getvalue())
    unbounded = ReadingPolicy(max_abs_amps=math.inf)  # the parser's exactness, not the policy, is under test
    readings = list(read_export(path, options(policy=unbounded)))
    assert [[r.currents[a] for a in (1, 2, 3)] for r in readings] == rows
    assert all(v is None or math.isfinite(v) for r in readings for v in r.currents.values())


def test_real_export_reads_clean(real_export):
    report = column_report(real_export, options(axes=list(range(1, 15))))
    assert report.axes_missing == [] and report.extra_axes == []
    readings, letters = split(read_export(real_export, options(axes=list(range(1, 15)))))
    assert (len(readings), letters) == (39_672, [])
    assert readings[0].ts == datetime(2022, 10, 17, 12, 18, 23, 660000, tzinfo=UTC)
    assert all(r.currents[a] is None for r in readings for a in range(9, 15))
    assert max(r.currents[2] for r in readings) == pytest.approx(51.71, abs=0.01)


# Lines of a mostly good export: good rows, and now and then what the column path must hand to the careful one.
good_line = st.builds(
    lambda a, b, step: (f'"current",{a!r},{"" if b is None else repr(b)},,', step),
    st.floats(-999, 999),
    st.one_of(st.none(), st.floats(-999, 999)),
    st.sampled_from([0, 1, 2, -1]),
)
odd_line = st.sampled_from(
    [
        '"current",abc,1,,"{t}"',  # not a number
        '"current",1,2,3',  # a field short
        "",  # blank
        '"current",1,"two\nlines",,"{t}"',  # a record over two lines
        '"current",5000,1,,"{t}"',  # beyond the policy's bound
        '"current",nan,1,,"{t}"',
        '"current",1,2,,"not a time"',
        '"current", ,1,,"{t}"',  # a blank cell
        '"current",1,2,,"{t}",,',  # trailing empty fields: accepted
        '"current",1,2,,"1980-01-01T00:00:00Z"',  # before the policy's earliest
        '"current",1,2,,"2022-10-17T14:00:00+02:00"',  # another zone
        '"current",1,2,,"{t}',  # a quote left open to the end of the file
    ]
)


@st.composite
def mixed_exports(draw) -> str:
    lines, t = [HEADER], datetime(2022, 10, 17, 12, tzinfo=UTC)
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(odd_line).replace("{t}", t.isoformat()))
        else:
            text, step = draw(good_line)
            t += timedelta(seconds=step)
            lines.append(f'{text}"{t.isoformat().replace("+00:00", "Z")}"')
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


def read_all(path: Path, opts: CsvOptions, **kw) -> list:
    """Every record, the column path's blocks opened up: what a reader of rows sees."""
    out = []
    for item in read_export_blocks(path, opts, **kw):
        out += item.rows() if isinstance(item, Block) else item
    return [comparable(i) for i in out]


def comparable(item):
    return item.model_dump(exclude={"received_at"}) if isinstance(item, DeadLetter) else item


@settings(max_examples=150, deadline=None)
@given(
    text=mixed_exports(),
    block_lines=st.sampled_from([1, 2, 3, 7, 5000]),
    start_row=st.integers(0, 5),
    limit=st.one_of(st.none(), st.integers(0, 25)),
    tolerance=st.sampled_from([0.0, 1.5]),
)
def test_blocks_read_exactly_what_record_by_record_reads(
    tmp_path_factory, text, block_lines, start_row, limit, tolerance
):
    path = write(tmp_path_factory.mktemp("b"), text)
    opts = options(backwards_tolerance_s=tolerance)
    kw = {"start_row": start_row, "limit": limit, "log_columns": False}
    with patch.object(_Reading, "block", lambda self, lines: None):  # every line the careful way
        careful = read_all(path, opts, block_lines=block_lines, **kw)
    assert read_all(path, opts, block_lines=block_lines, **kw) == careful
    assert [comparable(i) for i in read_export_rows(path, opts, **kw)] == careful


def test_a_bad_line_sends_only_its_block_the_careful_way(tmp_path):
    rows = [f"{i},{i},{i},2022-10-17T12:00:{i:02d}Z" for i in range(9)]
    rows[4] = "x,1,2,2022-10-17T12:00:04Z"
    path = write(tmp_path, "Axis #1,Axis #2,Axis #3,Time\n" + "\n".join(rows) + "\n")
    items = list(read_export_blocks(path, options(), block_lines=3))
    assert [type(i).__name__ for i in items] == ["Block", "list", "Block"]
    assert [r.line for r in items[1]] == [5, 6, 7] and isinstance(items[1][1], DeadLetter)
    assert items[2].first_line == 8 and items[2].currents[2] == [6.0, 7.0, 8.0]


def test_the_real_export_reads_as_blocks_of_columns(real_export):
    items = list(read_export_blocks(real_export, options(axes=list(range(1, 15)))))
    assert all(isinstance(i, Block) for i in items) and sum(map(len, items)) == 39_672
    assert [a for a, column in items[0].currents.items() if column is None] == list(range(9, 15))
