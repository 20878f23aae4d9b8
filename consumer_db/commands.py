"""What each ``python -m consumer_db`` command does, once the arguments are parsed.

Imported here: what every command needs (the settings, logging). Each command imports the rest itself, when
it runs: SQLAlchemy once it connects, the sink's Kafka client, metrics server and event loop, alembic, the CSV
parser, the XLSX writer. A query then starts without them; ``query --list`` and a misspelt phrase do not come
here at all (consumer_db.cli; tests/unit/test_phrases.py checks what each loads in a fresh interpreter).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from common.errors import AxiswatchError, ServiceUnavailable
from common.service import setup_logging
from consumer_db.settings import ConsumerDbSettings

if TYPE_CHECKING:
    from sqlalchemy import Engine

logger = logging.getLogger(__name__)


def execute(command: Callable[[argparse.Namespace, ConsumerDbSettings], int], args: argparse.Namespace) -> int:
    """Build the settings once, run the command; every expected failure is one clear line on stderr.
    Exit codes: 1 a service or file is not there, 2 the request itself is wrong."""
    overrides = {"database_url": args.database_url, "log_level": args.log_level}
    try:
        settings = ConsumerDbSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    # Alembic reports every step at INFO; consumer_db.migrate says what matters in one line.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    # The collector stays off (consumer_db.cli.main) while the command imports what it uses and makes its
    # engine: start-up's end is the engine (_engine), or the sink's start (run_sink).
    try:
        return command(args, settings)
    except Exception as exc:
        said = _expected_failure(exc)
        if said is None:  # a bug: its traceback shows
            raise
        message, code = said
        print(f"error: {message}", file=sys.stderr)
        return code


def _expected_failure(exc: Exception) -> tuple[str, int] | None:
    """The one line an expected failure says, and its exit code; None for any other exception."""
    if isinstance(exc, (ServiceUnavailable, OSError)):
        return str(exc), 1
    if isinstance(exc, AxiswatchError):
        return str(exc), 2
    if isinstance(exc, ValidationError):  # an option past its setting's bound (CommonSettings.with_options)
        return f"invalid settings: {exc}", 2
    # Only now: a command that did not connect (query --list, a misspelt phrase) does not load SQLAlchemy.
    from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

    if isinstance(exc, (OperationalError, ProgrammingError)):
        from common.store.db import database_problem

        return database_problem(exc), 1
    if isinstance(exc, SQLAlchemyError):  # one line from the driver, never the statement and its parameters
        from consumer_db.retry import short_error  # with the sink's retries and their metrics: not on every start

        return f"the database refused the request: {short_error(exc)}", 1
    return None


def _start_up_done() -> None:
    """Start-up (modules, classes, the settings, the engine) made objects that live until the exit: no
    collection could free any, yet each walked them all. The collector was off through it (consumer_db.cli.main);
    what it made is frozen, so the collector does not walk it again while the command works, and turns on for
    the command's work. With the collector on from the command's first line instead, SQLAlchemy's import alone
    ran ~80 collections (docs/benchmarks.md, "fixed13")."""
    gc.freeze()
    gc.enable()


def _engine(settings: ConsumerDbSettings, *, existing: bool = False) -> Engine:
    """The command's engine, and with it the end of its start-up (_start_up_done). ``existing``: a command that
    only reads (query, export) must not create an empty SQLite file."""
    from sqlalchemy import make_url

    from common.store.db import make_engine

    url = make_url(settings.database_url.get_secret_value())
    if existing and url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not Path(url.database).is_file():
            raise FileNotFoundError(f"no SQLite database at {url.database}")
    engine = make_engine(settings.database_url, log_version=False)
    _start_up_done()
    return engine


def run_sink(args: argparse.Namespace, settings: ConsumerDbSettings) -> int:
    import asyncio

    from common.metrics import Health, serving
    from common.service import run_service
    from common.wire.kafka import open_bus
    from consumer_db.service import run

    settings = settings.with_options(
        sink_group_id=args.group_id, sink_batch_size=args.batch_size, sink_batch_ms=args.batch_ms
    )
    if args.no_migrate:
        settings = settings.model_copy(update={"migrate_on_start": False})
    _start_up_done()  # the sink sets its own start-up aside once subscribed (consumer_db.service.run)

    async def serve(stop: asyncio.Event) -> int:
        health = Health()
        with serving(health, settings.sink_metrics_port):
            bus = open_bus(settings)
            await bus.start()
            try:
                await run(settings, bus=bus, stop=stop, health=health)
            finally:
                await bus.stop()
        return 0

    return run_service(serve, settings)


def migrate_db(args: argparse.Namespace, settings: ConsumerDbSettings) -> int:
    from common.store.db import safe_url
    from consumer_db.migrate import current_revision, head_revision, migrate

    if args.database_url is None and settings.migration_database_url is not None:
        settings = settings.model_copy(update={"database_url": settings.migration_database_url})
    engine = _engine(settings)
    try:
        if args.show:
            print(f"database {safe_url(engine)}: at {current_revision(engine) or 'empty'}, newest {head_revision()}")
        else:
            print(f"database {safe_url(engine)}: at {migrate(engine, args.revision)}")
    finally:
        engine.dispose()
    return 0


def ingest(args: argparse.Namespace, settings: ConsumerDbSettings) -> int:
    from common.csvio.controller_csv import CsvOptions
    from consumer_db.ingest import IngestOptions, ingest_csv
    from consumer_db.migrate import migrate

    csv = CsvOptions(
        robot_id=args.robot_id or settings.robot_id,
        axes=settings.axes,
        timezone=args.timezone or settings.csv_timezone,
        tick_seconds=settings.tick_seconds if args.tick_seconds is None else args.tick_seconds,
        start_time=args.start_time,
        backwards_tolerance_s=settings.backwards_tolerance_s
        if args.backwards_tolerance is None
        else args.backwards_tolerance,
        policy=settings.reading_policy(),
    )
    options = IngestOptions(
        csv,
        chunk_rows=args.chunk_rows or settings.ingest_chunk_rows,
        workers=args.workers,
        start_row=args.start_row,
        limit=args.limit,
        copy_min_rows=settings.sink_copy_min_rows,
    )
    engine = _engine(settings)
    try:
        migrate(engine)
        report = ingest_csv(engine, args.csv, options, progress=not args.no_progress)
    finally:
        engine.dispose()
    print(
        f"{report.file}: {report.readings} readings -> {report.rows_new} rows new, {report.rows_seen} already "
        f"stored; {report.rejected} rejected; {report.seconds:.2f} s ({report.rows_per_s:,.0f} rows/s)"
    )
    for reason, count in sorted(report.reasons.items(), key=lambda item: -item[1])[:10]:
        print(f"  rejected {count}x: {reason}")
    return 0


def query(args: argparse.Namespace, settings: ConsumerDbSettings) -> int:
    from consumer_db.output import write
    from consumer_db.phrases import QueryArgs, ask

    # --list and a misspelt phrase were answered already (consumer_db.cli.phrase_told)
    qargs = QueryArgs(
        robot_id=args.robot_id,
        start=args.start,
        end=args.end,
        at=args.at,
        n=args.n,
        gap_threshold_s=args.gap_threshold or settings.gap_threshold_s,
        tick_seconds=settings.tick_seconds,
    )
    engine = _engine(settings, existing=True)
    try:
        # No statement cache: a query command runs each statement once, so the cache's keys (~5–9 ms of CPU for
        # a fleet-wide phrase) would be made for nothing; the statements are compiled either way.
        with engine.connect().execution_options(compiled_cache=None) as conn:
            answer = ask(conn, args.phrase, qargs)
            if answer.note:
                print(answer.note, file=sys.stderr)
            write(sys.stdout, answer.rows, answer.tables, args.format)  # as the rows come: inside the connection
    finally:
        engine.dispose()
    return 0


def export(args: argparse.Namespace, settings: ConsumerDbSettings) -> int:
    from consumer_db.export import ExportOptions
    from consumer_db.export import export as write_export

    options = ExportOptions(
        out=args.out,
        page_size=args.page_size or settings.export_page_size,
        sample_rows=args.sample_rows or settings.export_sample_rows,
        robot_id=args.robot_id,
        gap_threshold_s=settings.gap_threshold_s,
        tick_seconds=settings.tick_seconds,
    )
    engine = _engine(settings, existing=True)
    try:
        report = write_export(engine, options, progress=not args.no_progress)
    finally:
        engine.dispose()
    print(f"{report.rows} readings rows; files in {options.out}:")
    for path in report.files:
        print(f"  {path.name}")
    return 0


COMMANDS = {"run": run_sink, "migrate": migrate_db, "ingest": ingest, "query": query, "export": export}
