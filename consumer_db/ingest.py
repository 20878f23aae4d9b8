"""Bulk ingest: a controller export straight into the stored readings (``readings_fact``), without Kafka.

The same parser as the producer (``common.csvio.controller_csv``), the same schema lock and row rules as the
sink (``axislock.RobotAxes``), the same idempotent writes (``store``): a re-run adds nothing, and a bad row
lands in ``rejected_readings`` once, with its line number and reason. A file without a time column is
stamped from its modification time (unless ``start_time`` is given), not from the clock, so that a re-run
stamps its rows alike and adds nothing either.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from itertools import pairwise, repeat
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine

from common.csvio.controller_csv import Block, CsvOptions, Row, read_export_blocks
from common.store.conflicts import find_conflicts
from common.store.rollup import MINUTE, floor_minute
from common.store.tables import seed_axes
from common.wire.schemas import DeadLetter
from consumer_db.axislock import Rejected, RobotAxes, load_axes
from consumer_db.rollup_writer import NewRows, add
from consumer_db.store import (
    ENSURE_PARTITIONS,
    insert_rejected,
    may_conflict,
    wide_block_text,
    write_wide_readings,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The main thread seeds and loads the robot's axes (start), reads the file and makes each chunk's stored
# form and COPY text (parse), makes the chunk's day partitions, and waits for a free writer; each writer
# COPYs its chunk (after the probe for rows stored already), folds it into the rollup (taking turns with the
# other writer at the robot's progress row), looks for conflicts and commits.
WRITER_PHASES = ("COPY", "fold", "conflicts", "commit")
PHASES = ("start", "parse", "partitions", "waiting for a writer", *WRITER_PHASES)


@dataclass
class IngestReport:
    file: str
    robot_id: str
    readings: int = 0
    rows_new: int = 0
    rows_seen: int = 0
    rejected: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    """Where ``seconds`` went, in seconds (``PHASES``); the writers' phases are summed over the writers."""

    @property
    def rows_per_s(self) -> float:
        return (self.rows_new + self.rows_seen) / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class IngestOptions:
    csv: CsvOptions
    """How to read the file; its ``axes`` seed ``axes_dim`` for a robot not seen before, after which the
    robot's stored axes are the lock."""
    chunk_rows: int = 5000
    start_row: int = 0
    limit: int | None = None
    copy_min_rows: int = 1000
    workers: int = 2


def ingest_csv(engine: Engine, path: Path, options: IngestOptions, *, progress: bool = False) -> IngestReport:
    """Read ``path`` and store it chunk by chunk, one transaction per chunk of ``chunk_rows`` records."""
    started = time.perf_counter()
    path = Path(path)
    robot_id = options.csv.robot_id
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=[robot_id], axes=options.csv.axes)
        lock = load_axes(conn, [robot_id])[robot_id]
    csv_options = replace(
        options.csv, axes=sorted(lock.known), start_time=options.csv.start_time or file_start_time(path)
    )
    report = IngestReport(file=path.name, robot_id=robot_id)
    report.phases["start"] = time.perf_counter() - started
    blocks = read_export_blocks(
        path, csv_options, start_row=options.start_row, limit=options.limit, block_lines=options.chunk_rows
    )
    bar = _progress_bar(path, options) if progress else _NoBar()
    # Parsing (here) overlaps with writing (in the pool): the database works while the next chunk is read.
    days: set[date] = set()
    with bar, ThreadPoolExecutor(options.workers, thread_name_prefix="ingest") as pool:
        in_flight: deque[tuple[Future, int, int]] = deque()
        for item in _timed(blocks, report.phases):
            for chunk in _chunks(item, options.chunk_rows):
                parsed = time.perf_counter()
                prepared = _prepare(chunk, lock, report)
                made = time.perf_counter()
                _make_partitions(engine, prepared.batch, days)
                report.phases["parse"] += made - parsed
                report.phases["partitions"] += time.perf_counter() - made
                write = pool.submit(_write, engine, prepared, options.copy_min_rows, path.name)
                in_flight.append((write, prepared.records, prepared.batch.count))
                while len(in_flight) > options.workers:
                    _collect(in_flight.popleft(), report, bar)
        while in_flight:
            _collect(in_flight.popleft(), report, bar)
    report.seconds = time.perf_counter() - started
    logger.info(
        "ingested %s: %d readings, %d rows new, %d already there, %d rejected in %.2f s (%.0f rows/s); %s",
        path.name,
        report.readings,
        report.rows_new,
        report.rows_seen,
        report.rejected,
        report.seconds,
        report.rows_per_s,
        phases_text(report.phases),
    )
    return report


def phases_text(phases: dict[str, float]) -> str:
    """``phase: 0.12 s, ...``, as the log line says them (``bench.ingest`` reads them back)."""
    return ", ".join(f"{name}: {seconds:.3f} s" for name, seconds in phases.items())


def _timed(items: Iterator[T], phases: dict[str, float]) -> Iterator[T]:
    """``items`` as they come, the time spent making each added to the phase ``parse``."""
    while True:
        started = time.perf_counter()
        item = next(items, None)
        phases["parse"] += time.perf_counter() - started
        if item is None:
            return
        yield item


@dataclass
class _Chunk:
    """One transaction's worth: the readings in the stored form (and their COPY text, when made at once
    from columns), what they add to the rollup, the dead letters, and the good records (for conflicts)."""

    records: int
    wide: list[tuple]
    batch: NewRows
    rejected: list[dict]
    accepted: Callable[[], list[Row]]
    text: str | None = None


def _prepare(chunk: Block | list[Row | DeadLetter], lock: RobotAxes, report: IngestReport) -> _Chunk:
    if type(chunk) is Block:
        prepared = _prepare_block(chunk, lock)
        if prepared is not None:
            report.readings += len(chunk)
            return prepared
        chunk = chunk.rows()
    return _prepare_rows(chunk, lock, report)


def _prepare_block(block: Block, lock: RobotAxes) -> _Chunk | None:
    """A block of good readings made into the stored form column by column (no Python work per cell), or
    None when the schema lock must look at each reading (a retired axis with a value, an unknown axis)."""
    shape = lock.wide_columns(block.currents)
    if shape is None:
        return None
    axes, amps = shape
    if not axes:  # no axis to store (every one retired, none with a value): no row, as row by row
        return _Chunk(len(block), [], NewRows(), [], block.rows)
    robot_id, ts = block.robot_id, block.ts
    columns = [repeat(None, len(ts)) if column is None else column for column in amps]
    wide = list(zip(repeat(robot_id), ts, repeat(axes), map(list, zip(*columns, strict=True)), strict=False))
    batch = NewRows({robot_id: _minutes_of(ts)}, {robot_id: [min(ts), max(ts)]}, len(ts) * axes.bit_count())
    text = wide_block_text(robot_id, ts, axes, amps, [block.cells.get(axis) for axis in range(1, len(amps) + 1)])
    return _Chunk(len(block), wide, batch, [], block.rows, text)


def _minutes_of(times: list[datetime]) -> set[datetime]:
    """The minutes of ``times`` (UTC, as a block's), each floored once: a reading inside the minute of the one
    before shares it (a minute holds ~30 readings; ``floor_minute`` of each was a tenth of the parse)."""
    minutes: set[datetime] = set()
    start = end = None
    for ts in times:
        if start is None or not start <= ts < end:
            start = floor_minute(ts)
            end = start + MINUTE
            minutes.add(start)
    return minutes


def _prepare_rows(chunk: list[Row | DeadLetter], lock: RobotAxes, report: IngestReport) -> _Chunk:
    readings: list[tuple] = []  # one (robot_id, ts, axes, amps) each: the stored form, gathered once here
    rejected: list[dict] = []
    accepted: list[Row] = []
    for record in chunk:
        if type(record) is Row:
            try:
                reading = lock.wide(record.robot_id, record.ts, record.currents)
                if reading[2]:  # no axis to store (every one retired, none with a value): no row, as before
                    readings.append(reading)
                report.readings += 1
                accepted.append(record)
                continue
            except Rejected as exc:
                record = DeadLetter(
                    source=report.file,
                    line=record.line,
                    raw=str(record.currents),
                    reason=str(exc),
                    robot_id=record.robot_id,
                )
        rejected.append(_rejected(record, report.robot_id))
        report.reasons[record.reason] = report.reasons.get(record.reason, 0) + 1
    report.rejected += len(rejected)
    return _Chunk(len(chunk), readings, NewRows.of_wide(readings), rejected, lambda: accepted)


def _make_partitions(engine: Engine, batch: NewRows, made: set[date]) -> None:
    """PostgreSQL: the chunk's day partitions, committed before its write. Made inside the writers'
    transactions, a new day's partition held the other writer up until the first one's commit. The day
    after too: a new partition waits for every write in flight to commit (it locks ``readings``), so the
    next day of a file that runs past midnight is made now, while none is."""
    days = {minute.date() for minutes in batch.minutes.values() for minute in minutes}
    if engine.dialect.name == "postgresql" and not days <= made:
        days.add(max(days) + timedelta(days=1))
        with engine.begin() as conn:
            conn.execute(ENSURE_PARTITIONS, {"days": sorted(datetime.combine(day, dtime(), UTC) for day in days)})
        made |= days


def _write(engine: Engine, chunk: _Chunk, copy_min_rows: int, source: str) -> tuple[int, list[str], dict]:
    """Store a chunk; returns the rows new, the reasons of its conflicts (readings whose robot and time
    were stored with other values: kept as rejected records, never dropped) and the seconds of its phases."""
    times = [time.perf_counter()]
    with engine.begin() as conn:
        made = conn.dialect.name == "postgresql"  # by _make_partitions
        new = write_wide_readings(
            conn, chunk.wide, copy_min_rows=copy_min_rows, text=chunk.text, batch=chunk.batch, partitions_made=made
        )
        times.append(time.perf_counter())
        add(conn, new, minutes_first=True)
        times.append(time.perf_counter())
        suspects = may_conflict(conn, chunk.accepted(), _key, chunk.wide) if new.count < chunk.batch.count else []
        contradicting = [_conflict(row, reason, source) for row, reason in find_conflicts(conn, suspects, _itself)]
        insert_rejected(conn, chunk.rejected + contradicting)
        times.append(time.perf_counter())
    times.append(time.perf_counter())
    phases = {name: end - start for name, (start, end) in zip(WRITER_PHASES, pairwise(times), strict=True)}
    return new.count, [c["reason"] for c in contradicting], phases


def _key(row: Row) -> tuple[str, datetime]:
    return row.robot_id, row.ts


def _itself(row: Row) -> Row:
    return row


def _conflict(row: Row, reason: str, source: str) -> dict:
    letter = DeadLetter(source=source, line=row.line, raw=str(row.currents), reason=reason, robot_id=row.robot_id)
    return _rejected(letter, row.robot_id)


def _collect(item: tuple[Future, int, int], report: IngestReport, bar) -> None:
    future, records, rows = item
    started = time.perf_counter()
    new, conflicts, phases = future.result()
    report.phases["waiting for a writer"] += time.perf_counter() - started
    for name, seconds in phases.items():
        report.phases[name] += seconds
    report.rows_new += new
    report.rows_seen += rows - new
    report.readings -= len(conflicts)
    report.rejected += len(conflicts)
    for reason in conflicts:
        key = reason.split(":", 1)[0]  # "conflict": one line of the summary for all of them
        report.reasons[key] = report.reasons.get(key, 0) + 1
    bar.update(records)


def _progress_bar(path: Path, options: IngestOptions):
    from tqdm import tqdm  # only for a bar on a terminal: not on every ingest's start

    return tqdm(total=_expected_records(path, options), unit=" records", desc=path.name)


class _NoBar(nullcontext):
    def update(self, _records: int) -> None:
        pass


def _rejected(letter: DeadLetter, robot_id: str) -> dict:
    # The origin makes a re-run store each bad line once, not once per run.
    return letter.model_dump(mode="python", exclude={"schema_version"}) | {
        "origin": f"csv:{robot_id}:{letter.source}:{letter.line}",
    }


def _chunks(item: Block | list, size: int) -> Iterator[Block | list]:
    """A block as it is (it holds ``chunk_rows`` lines at most); a careful stretch in parts of ``size``
    (a record over several lines can make it longer)."""
    if type(item) is Block:
        yield item
        return
    for start in range(0, len(item), size):
        yield item[start : start + size]


def file_start_time(path: Path) -> datetime:
    """The first time stamp of an export without a time column: its modification time, to the second."""
    return datetime.fromtimestamp(int(path.stat().st_mtime), UTC)


def _expected_records(path: Path, options: IngestOptions) -> int | None:
    """Lines after the header, for the progress bar (blank lines make it an upper bound)."""
    with open(path, "rb") as f:
        lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b"")) - 1
    remaining = max(lines - options.start_row, 0)
    return remaining if options.limit is None else min(remaining, options.limit)
