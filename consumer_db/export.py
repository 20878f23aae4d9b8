"""``python -m consumer_db export --out DIR``: the stored dataset as files.

- ``readings_<stamp>_p0001.csv`` ...: every row of readings_fact (robot_id, axis_id, ts, amps), in
  (robot, time, axis) order, one file per page; pages are read by key (``WHERE key > last key``), never
  OFFSET, so each page costs the same however deep it is.
- ``axis_summary_<stamp>.csv``, ``latest_20_<stamp>.csv``: the per-axis summary and the newest readings.
- ``axiswatch_<stamp>.xlsx``: sheets "Readings sample" (evenly spread over the data), "Axis summary",
  "Data health", "Latest 20". Excel has no time zones: its times are UTC, said so in the headers.

Every file is written to a temporary name and renamed when complete, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, func, or_, select, tuple_
from tqdm import tqdm

from common.settings import GAP_THRESHOLD_S, TICK_SECONDS
from common.store import queries
from common.store.sqlparts import where
from common.store.tables import readings_fact
from consumer_db.output import cell, columns
from consumer_db.xlsx import write_workbook

logger = logging.getLogger(__name__)
R = readings_fact
# (robot, time, axis): the order of the stored rows on PostgreSQL (one per reading), so a page is one stretch
# of the primary key there; on SQLite the (robot_id, ts) index.
KEY = (R.c.robot_id, R.c.ts, R.c.axis_id)
PAGE_COLUMNS = ("robot_id", "axis_id", "ts", "amps")


@dataclass
class ExportReport:
    files: list[Path] = field(default_factory=list)
    rows: int = 0


@dataclass(frozen=True)
class ExportOptions:
    out: Path
    page_size: int = 100_000
    sample_rows: int = 1000
    latest_n: int = 20
    robot_id: str | None = None
    gap_threshold_s: float = GAP_THRESHOLD_S
    tick_seconds: float = TICK_SECONDS
    stamp: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))


def export(engine: Engine, options: ExportOptions, *, progress: bool = False) -> ExportReport:
    options.out.mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(R).where(*_filters(options))).scalar_one()
        with tqdm(total=total, unit="rows", disable=not progress, desc="readings") as bar:
            for number, page in enumerate(pages(conn, options), start=1):
                report.files.append(write_csv(options.out / f"readings_{options.stamp}_p{number:04d}.csv", page))
                report.rows += len(page)
                bar.update(len(page))
        summary = queries.axis_summary(conn, robot_id=options.robot_id)
        latest = queries.latest_rows(conn, n=options.latest_n, robot_id=options.robot_id)
        health = queries.data_health(
            conn, robot_id=options.robot_id, gap_threshold_s=options.gap_threshold_s, tick_seconds=options.tick_seconds
        )
        sample = sample_readings(conn, rows=options.sample_rows, robot_id=options.robot_id)
    report.files.append(write_csv(options.out / f"axis_summary_{options.stamp}.csv", summary))
    report.files.append(write_csv(options.out / f"latest_{options.latest_n}_{options.stamp}.csv", latest))
    sheets = {
        "Readings sample": sample,
        "Axis summary": summary,
        "Data health": [{k: v for k, v in r.items() if k != "gaps"} for r in health],
        f"Latest {options.latest_n}": latest,
    }
    report.files.append(
        atomic(options.out / f"axiswatch_{options.stamp}.xlsx", lambda tmp: write_workbook(tmp, sheets))
    )
    logger.info("exported %d readings rows and %d files to %s", report.rows, len(report.files), options.out)
    return report


def _filters(options: ExportOptions) -> list:
    # Only a robot, no time range: the export pages through everything stored.
    return where(R, robot_id=options.robot_id, start=None, end=None)


def pages(conn: Connection, options: ExportOptions) -> Iterator[list[dict]]:
    """readings_fact in (robot, time, axis) order, ``page_size`` rows at a time, each page starting after the
    last key of the one before (keyset pagination)."""
    after = None
    while True:
        query = (
            select(*(R.c[c] for c in PAGE_COLUMNS)).where(*_filters(options)).order_by(*KEY).limit(options.page_size)
        )
        if after is not None:
            # the first condition is the one an index can seek to (axis_id is not a stored column there)
            query = query.where(tuple_(*KEY[:2]) >= tuple_(*after[:2]), tuple_(*KEY) > tuple_(*after))
        page = [dict(zip(PAGE_COLUMNS, row, strict=True)) for row in conn.execute(query)]
        if not page:
            return
        yield page
        after = tuple(page[-1][c.name] for c in KEY)


def sample_readings(conn: Connection, *, rows: int, robot_id: str | None = None) -> list[dict]:
    """``rows`` readings (all of them if fewer; wide, like latest_rows), evenly spread in (robot, time) order.

    The i-th of ``count`` readings is taken when ``i * rows // count`` moves on to a new value: exactly
    ``rows`` picks, the first included (every k-th one would give 992 of 1,984 for 1,000)."""
    stamps = (
        select(R.c.robot_id, R.c.ts)
        .where(*where(R, robot_id=robot_id, start=None, end=None))
        .group_by(R.c.robot_id, R.c.ts)
    )
    count = conn.execute(select(func.count()).select_from(stamps.subquery())).scalar_one()
    if count == 0 or rows <= 0:
        return []
    rows = min(rows, count)  # each one picked all the same; more (--sample-rows 10^20) overflowed i * rows in SQL
    numbered = stamps.add_columns(func.row_number().over(order_by=(R.c.robot_id, R.c.ts)).label("n")).subquery()
    i = numbered.c.n - 1
    picked = or_(i == 0, (i * rows) // count != ((i - 1) * rows) // count)
    keys = select(numbered.c.robot_id, numbered.c.ts).where(picked).subquery()
    return queries.wide_readings(conn, keys, newest_first=False)


def write_csv(path: Path, rows: list[dict]) -> Path:
    def write(tmp: Path) -> None:
        names = columns(rows) or list(PAGE_COLUMNS)
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            writer.writerows([cell(row.get(c)) for c in names] for row in rows)

    return atomic(path, write)


def atomic(path: Path, write) -> Path:
    """``write(tmp)`` then rename to ``path``: readers see the whole file or none of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
