"""Read a controller export (CSV) as a lazy stream of readings and dead letters.

Shared by the producer (replay) and consumer_db (bulk ingest), so the row loop is a tight loop over the
C ``csv`` module with plain checks that give each bad row its reason. :func:`read_export_rows` yields
plain tuples (no pydantic at all); :func:`read_export` then builds each :class:`Reading` the ordinary,
validated way, which costs no more than skipping the validation (docs/benchmarks.md).

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
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from common.csvio.csv_header import ColumnReport, read_header
from common.csvio.csv_time import TimeParser
from common.settings import DEFAULT_AXES, TICK_SECONDS
from common.wire.schemas import DEFAULT_POLICY, DeadLetter, Reading, ReadingPolicy

__all__ = ["CsvOptions", "ColumnReport", "Row", "column_report", "read_export", "read_export_rows"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CsvOptions:
    robot_id: str
    axes: list[int] = field(default_factory=lambda: list(DEFAULT_AXES))
    timezone: str = "UTC"
    tick_seconds: float = TICK_SECONDS
    start_time: datetime | None = None
    backwards_tolerance_s: float = 0.0
    policy: ReadingPolicy = DEFAULT_POLICY  # the plausible readings (bounds, dates, robot ids): CommonSettings


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
    path = Path(path)
    # errors="replace": a byte that is not UTF-8 makes its row's cell unreadable (a dead letter), not the file.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        raw_lines: list[str] = []
        reader = csv.reader(_remember(f, raw_lines))
        header = read_header(reader, options.axes, source=path.name)
        raw_lines.clear()
        if log_columns:
            header.log(logger)
        yield from _rows(reader, raw_lines, header, options, path.name, start_row, limit)


def _remember(lines: Iterator[str], seen: list[str]) -> Iterator[str]:
    # csv.reader only sees lines through this, so the raw text of a bad record is still at hand.
    for line in lines:
        seen.append(line)
        yield line


def _records(reader) -> Iterator[list[str] | csv.Error]:
    """The reader's records; one it cannot parse (a quote left open past csv's field size limit) comes
    as its ``csv.Error``, and reading goes on at the next line."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield exc


def _rows(reader, raw_lines, header: ColumnReport, options: CsvOptions, source: str, start_row: int, limit):
    width, time_index, robot_id = header.width, header.time_index, options.robot_id
    columns = list(zip(options.axes, header.axis_indexes, strict=True))
    parse_time = TimeParser(options.timezone)
    tick = timedelta(seconds=options.tick_seconds)
    start = parse_time.to_utc(options.start_time or datetime.now(UTC).replace(microsecond=0))
    tolerance = timedelta(seconds=options.backwards_tolerance_s)
    policy, now = options.policy, datetime.now(UTC)
    last_ts: datetime | None = None
    record, emitted, isfinite = -1, 0, math.isfinite
    for fields in _records(reader):
        line = reader.line_num - len(raw_lines) + 1
        if type(fields) is list and (not fields or (len(fields) == 1 and not fields[0].strip())):
            raw_lines.clear()  # a blank line is not a record
            continue
        record += 1
        if record < start_row:
            raw_lines.clear()
            continue
        if limit is not None and emitted >= limit:
            return
        emitted += 1
        try:
            if type(fields) is not list:
                raise _BadRow(f"not readable as CSV: {fields}")
            if len(fields) != width and (len(fields) < width or any(c.strip() for c in fields[width:])):
                raise _BadRow(f"expected {width} fields, found {len(fields)}")
            currents: dict[int, float | None] = {}
            for axis, index in columns:
                cell = None if index is None else fields[index]
                if not cell or cell.isspace():
                    currents[axis] = None
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    raise _BadRow(f"{header.names[index]}: {cell!r} is not a number") from None
                if not isfinite(value):
                    raise _BadRow(f"{header.names[index]}: {cell!r} is not a finite number")
                currents[axis] = value
            if time_index is None:
                ts = start + record * tick
            else:
                try:
                    ts = parse_time(fields[time_index])
                except ValueError as exc:
                    raise _BadRow(f"{header.names[time_index]}: {exc}") from None
            if last_ts is not None and last_ts - ts > tolerance:
                raise _BadRow(
                    f"time goes backwards by {(last_ts - ts).total_seconds():g} s "
                    f"(after {last_ts.isoformat()}; tolerance {options.backwards_tolerance_s:g} s)"
                )
            implausible = policy.problem(robot_id, ts, currents, now=now)
            if implausible:
                raise _BadRow(implausible)
        except Exception as bad:  # noqa: BLE001 - a _BadRow, or anything else one row provokes: never the file
            reason = str(bad) if isinstance(bad, _BadRow) else f"unreadable row: {type(bad).__name__}: {bad}"
            raw = "".join(raw_lines).rstrip("\r\n")
            raw_lines.clear()
            yield DeadLetter(source=source, line=line, raw=raw, reason=reason, robot_id=robot_id)
            continue
        raw_lines.clear()
        last_ts = ts
        yield Row(line, robot_id, ts, currents)
