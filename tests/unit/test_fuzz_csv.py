"""Malformed controller exports, fuzzed with hypothesis, through the producer's parser.

The contract under test: ``read_export`` never raises anything but :class:`CsvFormatError` (and that only
for a header it cannot use), and every data record of the file comes out exactly once, as a Reading or as
a DeadLetter carrying its 1-based line number. The producer then puts each on its topic: nothing is lost
between the parser and the bus either.
"""

from __future__ import annotations

import asyncio
import csv
import math
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common.csvio.controller_csv import CsvOptions, read_export
from common.errors import CsvFormatError
from common.wire.bus import InProcessBus
from common.wire.schemas import DeadLetter, Reading
from producer.service import run
from producer.settings import ProducerSettings

AXES = [1, 2, 3]
T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# One physical line per record: no quote and no line break inside a field.
line_text = st.text(st.characters(blacklist_characters='"\r\n', blacklist_categories=("Cs",)), max_size=40)
number_cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", " ", "1e999", "-inf", "NaN", "1_0", " 2.5 ", "0x10", "1,5", "--1", "\x00"]),
    line_text,
)
time_cell = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-14)), timezone(timedelta(hours=14))]),
    ).map(datetime.isoformat),
    st.sampled_from(
        ["", "2022-10-17", "2022-02-30T00:00:00Z", "24:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"]
    ),
    line_text,
)


@st.composite
def exports(draw) -> tuple[str, list[tuple[int, str]]]:
    """A header (some axes, maybe a time column) and data lines: good rows, rows with fuzzed cells, rows
    of arbitrary text and blank lines. Returns the text and the (line number, text) of each data record."""
    axes = draw(st.lists(st.sampled_from(AXES + [4]), min_size=1, max_size=4, unique=True))
    with_time = draw(st.booleans())
    header = ["Trait", *(f"Axis #{a}" for a in axes)] + (["Time"] if with_time else [])
    lines = [",".join(header)]
    ts = T0
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["good", "good", "cells", "text", "blank"]))
        ts += timedelta(seconds=draw(st.integers(-3, 5)))
        if kind == "blank":
            lines.append(draw(st.sampled_from(["", " ", "\t"])))
        elif kind == "text":
            lines.append(draw(line_text))
        else:
            fuzzed = kind == "cells"
            cells = [
                draw(number_cell) if fuzzed else str(draw(st.floats(0, 60).map(lambda v: round(v, 3)))) for _ in axes
            ]
            times = [draw(time_cell) if fuzzed else ts.isoformat()] if with_time else []
            extra = draw(st.sampled_from([[], [""], ["x"]])) if fuzzed else []
            lines.append(",".join(["current", *cells, *times, *extra]))
    records = [(n, text) for n, text in enumerate(lines[1:], start=2) if not _blank(text)]
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"])), records


def _blank(text: str) -> bool:
    # What the parser skips: no field at all, or one field of white space only.
    return "," not in text and not text.strip()


def parse(data: bytes, name: str = "export.csv") -> list[Reading | DeadLetter]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        return list(read_export(path, CsvOptions(robot_id="R1", axes=AXES, start_time=T0), log_columns=False))


@FUZZ
@given(exports())
def test_every_data_line_is_a_reading_or_a_dead_letter_with_its_line_number(export):
    text, records = export
    items = parse(text.encode())
    assert [_line(item) for item in items] == [n for n, _ in records]
    by_line = dict(records)
    for item in items:
        if isinstance(item, DeadLetter):
            assert (item.source, item.robot_id) == ("export.csv", "R1") and item.reason
            assert item.raw == by_line[item.line]
        else:
            assert item.robot_id == "R1" and item.ts.tzinfo is UTC
            assert all(v is None or math.isfinite(v) for v in item.currents.values())
            assert sorted(item.currents) == AXES
    stamps = [item.ts for item in items if isinstance(item, Reading)]
    assert stamps == sorted(stamps), "a time going backwards must have been dead-lettered"


@FUZZ
@given(st.binary(max_size=400))
@example(b"Trait,Axis #1,Time\ncurrent,\xff1,2022-10-17T12:00:00Z\ncurrent,1,2022-10-17T12:00:02Z\n")
@example(b"Trait,Axis #1,Time\ncurrent,1,9999-12-31T23:00:00-05:00\ncurrent,1,0001-01-01T00:00:00+05:00\n")
@example(b'Trait,Axis #1,Time\ncurrent,"1,2022-10-17T12:00:00Z\ncurrent,1,2022-10-17T12:00:02Z')
@example(b"\xef\xbb\xbfTrait,Axis #1\r\n\r\ncurrent,1\x00\r\ncurrent,\r")
def test_arbitrary_bytes_never_crash_the_parser(data):
    try:
        items = parse(data)
    except CsvFormatError:
        return  # the documented refusal of an unusable header
    lines = [_line(item) for item in items]
    assert lines == sorted(set(lines)) and all(2 <= n <= data.count(b"\n") + data.count(b"\r") + 1 for n in lines)
    assert all(isinstance(item, DeadLetter) and item.reason or isinstance(item, Reading) for item in items)


def test_an_unterminated_quote_longer_than_the_csv_field_limit_is_one_dead_letter():
    body = "\n".join(f"current,{i},2022-10-17T14:00:0{2 * i}Z" for i in range(3))
    swallowed = "current,1,2022-10-17T13:00:00Z\n" * (csv.field_size_limit() // 30 + 10)
    items = parse(f'Trait,Axis #1,Time\ncurrent,"1,2022-10-17T12:59:00Z\n{swallowed}{body}\n'.encode())
    letters = [item for item in items if isinstance(item, DeadLetter)]
    assert [item.line for item in letters] == [2] and "field" in letters[0].reason
    readings = [item for item in items if isinstance(item, Reading)]
    assert [r.currents[1] for r in readings[-3:]] == [0.0, 1.0, 2.0], "the lines after it are read again"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exports())
def test_the_producer_puts_every_record_on_its_topic(export):
    text, records = export
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.csv"
        path.write_text(text, encoding="utf-8")
        expected = list(read_export(path, CsvOptions(robot_id="R1", axes=AXES, start_time=T0), log_columns=False))
        config = ProducerSettings(
            _env_file=None,
            bus="memory",
            csv_path=path,
            axes="1-3",
            robot_id="R1",
            axes_from_db=False,
            max_speed=True,
            start_time=T0,
        )
        bus = InProcessBus()
        report = asyncio.run(run(config, bus=bus, stop=asyncio.Event()))
    readings = [Reading.from_bytes(m.value) for log in bus._log(config.readings_topic) for m in log]
    letters = [DeadLetter.from_bytes(m.value) for log in bus._log(config.dead_letter_topic) for m in log]
    assert len(readings) + len(letters) == len(records) == len(expected)
    assert [r.row for r in readings] == [e.row for e in expected if isinstance(e, Reading)]
    assert sorted(d.line for d in letters) == [e.line for e in expected if isinstance(e, DeadLetter)]
    assert (report.readings_confirmed, report.dead_letters_confirmed) == (len(readings), len(letters))
    assert report.unconfirmed == 0


def _line(item: Reading | DeadLetter) -> int:
    return item.row if isinstance(item, Reading) else item.line
