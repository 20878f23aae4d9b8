"""Read a controller export (CSV) as a lazy stream of readings and dead letters.

Shared by the producer (replay) and consumer_db (bulk ingest). The file is read a block of lines at a
time: a block whose every line is a good reading is checked column by column in C and comes out as a
:class:`Block` of columns (:func:`read_export_blocks`, what the ingest turns into COPY text without a Python
step per cell); any other block goes record by record, with plain checks that give each bad row its
reason. Both ways apply the same rules below; a property test holds them to the same records.
:func:`read_export_rows` yields plain tuples (no pydantic at all); :func:`read_export` then builds each
:class:`Reading` the ordinary, validated way, which costs no more than skipping the validation
(docs/benchmarks.md).

Rules (the issue's, in one place):

- Header ``Trait, Axis #1 … Axis #N, Time``; quoted or not; a BOM, CRLF ends, blank lines and trailing
  empty columns are accepted. The time column may be ``Time``/``time``/``timestamp``; without one, time
  stamps are ``start_time + record_index * tick_seconds``.
- Schema lock: only ``options.axes`` are read. A listed axis missing from the file is ``None`` ("OK null")
  in every row; an axis column outside the list is reported by :func:`column_report` and ignored.
- An empty cell is ``None``, never 0 and never an error.
- A bad row (wrong field count, a current that is not a finite number, a time that cannot be read or is
  ambiguous in the configured zone, a time going backwards by more than the tolerance, a record the CSV
  reader cannot parse, bytes that are not UTF-8 in a cell, a reading ``options.policy`` finds implausible)
  becomes a
  :class:`DeadLetter` with the file name, the 1-based line number, the raw line and the reason.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

from pydantic import ConfigDict, TypeAdapter, ValidationError

from common.csvio.csv_header import ColumnReport, read_header
from common.csvio.csv_time import TimeParser
from common.errors import ConfigurationError
from common.settings import DEFAULT_AXES, TICK_SECONDS, BackwardsToleranceS, TickSeconds
from common.wire.schemas import DEFAULT_POLICY, DeadLetter, Reading, ReadingPolicy

__all__ = [
    "Block",
    "CsvOptions",
    "ColumnReport",
    "Row",
    "column_report",
    "read_export",
    "read_export_blocks",
    "read_export_rows",
]

BLOCK_LINES = 5000  # lines of the file read and checked at once: bounded memory, whatever the file's size

logger = logging.getLogger(__name__)
CALENDAR_S = (datetime.max - datetime.min).total_seconds()  # no two times are further apart
_TICK_SECONDS = TypeAdapter(TickSeconds, config=ConfigDict(allow_inf_nan=False))  # as CommonSettings' config
_BACKWARDS_TOLERANCE = TypeAdapter(BackwardsToleranceS)


@dataclass(frozen=True)
class CsvOptions:
    robot_id: str
    axes: list[int] = field(default_factory=lambda: list(DEFAULT_AXES))
    timezone: str = "UTC"
    tick_seconds: float = TICK_SECONDS
    start_time: datetime | None = None
    backwards_tolerance_s: float = 0.0
    policy: ReadingPolicy = DEFAULT_POLICY  # the plausible readings (bounds, dates, robot ids): CommonSettings

    def __post_init__(self) -> None:
        # Every row of the export is this robot's: one it refuses would make each of them a dead letter for the
        # same reason (and ingest had seeded it into axes_dim first). Said once, before anything is read.
        refused = self.policy.robot_problem(self.robot_id)
        if refused:
            raise ConfigurationError(f"the export's robot (--robot-id, ROBOT_ID) is refused: {refused}")
        # The settings' rules, for the options that override them: NaN or infinity once stopped the reader with a
        # traceback, a negative tolerance refused steps forward.
        for rule, value, names in (
            (_TICK_SECONDS, self.tick_seconds, "--tick-seconds (TICK_SECONDS)"),
            (_BACKWARDS_TOLERANCE, self.backwards_tolerance_s, "--backwards-tolerance (BACKWARDS_TOLERANCE_S)"),
        ):
            try:
                rule.validate_python(value)
            except ValidationError as exc:
                raise ConfigurationError(f"{names} in seconds: {exc.errors()[0]['msg']}, got {value!r}") from None


class Row(NamedTuple):
    """The fast path's row: unpacks as ``(line, robot_id, ts, currents)``."""

    line: int
    robot_id: str
    ts: datetime
    currents: dict[int, float | None]


class _BadRow(Exception):
    """A reason to dead-letter the current row; never leaves this module."""


def column_report(path: Path, options: CsvOptions) -> ColumnReport:
    """What the header offers against the axis list, without reading the data rows."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        return read_header(csv.reader(f), options.axes, source=Path(path).name)


def read_export(
    path: Path, options: CsvOptions, *, start_row: int = 0, limit: int | None = None, log_columns: bool = True
) -> Iterator[Reading | DeadLetter]:
    """Every data record of the file from ``start_row`` (0-based, blank lines not counted), at most
    ``limit`` of them, as readings or dead letters, in file order."""
    for item in read_export_rows(path, options, start_row=start_row, limit=limit, log_columns=log_columns):
        if type(item) is Row:
            yield Reading(robot_id=item.robot_id, ts=item.ts, row=item.line, currents=item.currents)
        else:
            yield item


def read_export_rows(
    path: Path, options: CsvOptions, *, start_row: int = 0, limit: int | None = None, log_columns: bool = True
) -> Iterator[Row | DeadLetter]:
    """Like :func:`read_export`, but yields plain :class:`Row` tuples for bulk ingest."""
    for item in read_export_blocks(path, options, start_row=start_row, limit=limit, log_columns=log_columns):
        yield from item.rows() if type(item) is Block else item


def read_export_blocks(
    path: Path,
    options: CsvOptions,
    *,
    start_row: int = 0,
    limit: int | None = None,
    log_columns: bool = True,
    block_lines: int = BLOCK_LINES,
) -> Iterator[Block | list[Row | DeadLetter]]:
    """The records of :func:`read_export_rows`, ``block_lines`` lines of the file at a time: a :class:`Block`
    of columns when every line of them is one good reading (the usual case, checked column by column in C),
    else that stretch read record by record, as a list of rows and dead letters with their reasons."""
    path = Path(path)
    # errors="replace": a byte that is not UTF-8 makes its row's cell unreadable (a dead letter), not the file.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        raw_lines: list[str] = []
        reader = csv.reader(_remember(f, raw_lines))
        header = read_header(reader, options.axes, source=path.name)
        if log_columns:
            header.log(logger)
        read = _Reading(header, options, path.name, start_row, limit, lines_read=reader.line_num)
        while not read.done and (lines := list(itertools.islice(f, block_lines))):
            block = read.block(lines)
            yield block if block is not None else read.careful(lines, f)


@dataclass(frozen=True)
class Block:
    """Consecutive records, one line each, every one a good reading (``Row``) of ``robot_id``: the time
    stamps and, per axis of the list, its currents (``None``: no value in any of them)."""

    first_line: int
    robot_id: str
    ts: list[datetime]
    currents: dict[int, list[float | None] | None]
    cells: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """The cells of each axis whose every cell holds a number, as the file wrote them (``currents`` holds what
    ``float`` read from them): a writer may pass them on as text instead of formatting the floats again."""

    def __len__(self) -> int:
        return len(self.ts)

    def rows(self) -> list[Row]:
        columns = [repeat(None) if c is None else c for c in self.currents.values()]
        return [
            Row(line, self.robot_id, ts, dict(zip(self.currents, values, strict=True)))
            for line, ts, *values in zip(itertools.count(self.first_line), self.ts, *columns)
        ]


def _remember(lines: Iterator[str], seen: list[str]) -> Iterator[str]:
    # csv.reader only sees lines through this, so the raw text of a bad record is still at hand.
    for line in lines:
        seen.append(line)
        yield line


def _utc_times(cells: tuple[str, ...]) -> list[datetime] | None:
    """The stamps when every one is plain ISO-8601 in UTC (what ``TimeParser`` makes of them too), read in C;
    otherwise None, and ``TimeParser`` reads each."""
    try:
        times = list(map(datetime.fromisoformat, cells))
    except ValueError:
        return None
    return times if set(map(_zone_of, times)) == {UTC} else None


_zone_of = operator.attrgetter("tzinfo")


class _Lines:
    """A block's lines, then (only while csv.reader is inside a record that goes on) the file's next ones."""

    def __init__(self, lines: list[str], rest: Iterator[str]) -> None:
        self.lines, self.rest, self.used = lines, rest, 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.used < len(self.lines):
            self.used += 1
            return self.lines[self.used - 1]
        return next(self.rest)

    @property
    def block_read(self) -> bool:
        return self.used >= len(self.lines)


class _Reading:
    """Where the reading of one file stands (records seen, the last good time, lines read), and its two ways
    of reading a block of lines: column by column when all is well, record by record otherwise."""

    def __init__(
        self, header: ColumnReport, options: CsvOptions, source: str, start_row: int, limit: int | None, lines_read
    ) -> None:
        self.header, self.options, self.source = header, options, source
        self.start_row, self.limit = start_row, limit
        self.lines_read = lines_read
        self.columns = list(zip(options.axes, header.axis_indexes, strict=True))
        self.parse_time = TimeParser(options.timezone)
        self.tick = timedelta(seconds=options.tick_seconds)
        self.start = self.parse_time.to_utc(options.start_time or datetime.now(UTC).replace(microsecond=0))
        # a tolerance past the calendar's span (infinity too) tolerates any step back, as the span itself does
        self.tolerance = timedelta(seconds=min(options.backwards_tolerance_s, CALENDAR_S))
        self.now = datetime.now(UTC)
        self.record, self.emitted, self.done = -1, 0, False
        self.last_ts: datetime | None = None

    def block(self, lines: list[str]) -> Block | None:
        """The lines as a :class:`Block`, or None when any of them needs :meth:`careful` (a bad record, a
        blank line, a record over several lines, records to skip, the limit inside the block). Soundness: it
        accepts only what :meth:`careful` would accept, value for value (tests/unit/test_controller_csv.py)."""
        options, header, n = self.options, self.header, len(lines)
        if self.record + 1 < self.start_row or (self.limit is not None and self.emitted + n > self.limit):
            return None
        try:
            records = list(csv.reader(lines))
        except csv.Error:
            return None
        if len(records) != n or set(map(len, records)) != {header.width}:
            return None  # a blank line, a wrong field count, or a record over several lines
        if records[-1][-1].endswith(("\n", "\r")):
            return None  # the last line leaves a quote open: its record goes on past the block
        fields = list(zip(*records, strict=True))
        try:
            if header.time_index is None:
                ts = [self.start + (self.record + 1 + i) * self.tick for i in range(n)]
            else:
                ts = _utc_times(fields[header.time_index]) or list(map(self.parse_time, fields[header.time_index]))
            currents: dict[int, list[float | None] | None] = {}
            numbers: dict[int, tuple[str, ...]] = {}
            low, high, total, smallest = math.inf, -math.inf, 0.0, math.inf
            for axis, index in self.columns:
                cells = None if index is None else fields[index]
                if cells is None or not any(cells):
                    currents[axis] = None
                    continue
                if "" in cells:
                    values = [float(c) if c else None for c in cells]
                    present = [v for v in values if v is not None]
                else:
                    values = present = list(map(float, cells))
                    numbers[axis] = cells
                total += sum(present)
                low, high = min(low, min(present)), max(high, max(present))
                smallest = min(smallest, min(filter(None, map(abs, present)), default=math.inf))
                currents[axis] = values
        except Exception:  # noqa: BLE001 - whatever it is, the careful way gives each record its reason
            return None
        if not math.isfinite(total):  # a NaN or an infinity anywhere (or a sum past float's range: careful too)
            return None
        previous = ts[:-1] if self.last_ts is None else [self.last_ts, *ts[:-1]]
        if previous and max(map(operator.sub, previous, ts[-len(previous) :])) > self.tolerance:
            return None
        # The policy's rules are bounds (robot id, earliest and latest time, largest |current|, smallest
        # nonzero |current|): if the block's extremes pass them, every reading of it does. (Filed under axes 1-3,
        # numbers the policy takes: they are values, not axes.)
        extremes = {} if low > high else {1: low, 2: high, 3: smallest if smallest < math.inf else None}
        policy, robot_id = options.policy, options.robot_id
        if policy.problem(robot_id, min(ts), extremes, now=self.now) or policy.problem(
            robot_id, max(ts), extremes, now=self.now
        ):
            return None
        block = Block(self.lines_read + 1, robot_id, ts, currents, numbers)
        self.record += n
        self.emitted += n
        self.lines_read += n
        self.last_ts = ts[-1]
        return block

    def careful(self, lines: list[str], rest: Iterator[str]) -> list[Row | DeadLetter]:
        """The lines record by record, each bad one a dead letter with its reason; a record still open at
        the block's end goes on into the file's next lines."""
        source = _Lines(lines, rest)
        raw_lines: list[str] = []
        reader = csv.reader(_remember(source, raw_lines))
        out: list[Row | DeadLetter] = []
        while not source.block_read:
            try:
                fields: list[str] | csv.Error = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # a quote left open past csv's field size limit: go on at the next line
                fields = exc
            line = self.lines_read + reader.line_num - len(raw_lines) + 1
            raw = "".join(raw_lines).rstrip("\r\n")
            raw_lines.clear()
            if type(fields) is list and (not fields or (len(fields) == 1 and not fields[0].strip())):
                continue  # a blank line is not a record
            self.record += 1
            if self.record < self.start_row:
                continue
            if self.limit is not None and self.emitted >= self.limit:
                self.done = True
                break
            self.emitted += 1
            out.append(self._record(fields, line, raw))
        self.lines_read += reader.line_num
        return out

    def _record(self, fields: list[str] | csv.Error, line: int, raw: str) -> Row | DeadLetter:
        options, header = self.options, self.header
        robot_id = options.robot_id
        try:
            if type(fields) is not list:
                raise _BadRow(f"not readable as CSV: {fields}")
            width = header.width
            if len(fields) != width and (len(fields) < width or any(c.strip() for c in fields[width:])):
                raise _BadRow(f"expected {width} fields, found {len(fields)}")
            currents: dict[int, float | None] = {}
            for axis, index in self.columns:
                cell = None if index is None else fields[index]
                if not cell or cell.isspace():
                    currents[axis] = None
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    raise _BadRow(f"{header.names[index]}: {cell!r} is not a number") from None
                if not math.isfinite(value):
                    raise _BadRow(f"{header.names[index]}: {cell!r} is not a finite number")
                currents[axis] = value
            if header.time_index is None:
                ts = self.start + self.record * self.tick
            else:
                try:
                    ts = self.parse_time(fields[header.time_index])
                except ValueError as exc:
                    raise _BadRow(f"{header.names[header.time_index]}: {exc}") from None
            last_ts = self.last_ts
            if last_ts is not None and last_ts - ts > self.tolerance:
                raise _BadRow(
                    f"time goes backwards by {(last_ts - ts).total_seconds():g} s "
                    f"(after {last_ts.isoformat()}; tolerance {options.backwards_tolerance_s:g} s)"
                )
            implausible = options.policy.problem(robot_id, ts, currents, now=self.now)
            if implausible:
                raise _BadRow(implausible)
        except Exception as bad:  # noqa: BLE001 - a _BadRow, or anything else one row provokes: never the file
            reason = str(bad) if isinstance(bad, _BadRow) else f"unreadable row: {type(bad).__name__}: {bad}"
            return DeadLetter(source=self.source, line=line, raw=raw, reason=reason, robot_id=robot_id)
        self.last_ts = ts
        return Row(line, robot_id, ts, currents)
