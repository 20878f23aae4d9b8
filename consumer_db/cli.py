"""``python -m consumer_db [run|migrate|ingest|query|export] ...``; without a command it runs the sink.

Only the standard library at the top: ``--help``, a wrong argument, ``query --list`` and a misspelt phrase
answer before pydantic, SQLAlchemy or Kafka's client are loaded, and each command loads what it uses
(consumer_db.commands).
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
from datetime import datetime
from pathlib import Path

from common.counts import count_option
from common.query_time import query_time
from consumer_db.output import FORMATS

DESCRIPTION = """\
The database sink of axiswatch and its tools.

  run      (default) consume the readings, alerts and dead-letter topics into the database
  migrate  bring the database schema up to date (the sink also does it at start)
  ingest   load a controller CSV export straight into the database, without Kafka
  query    ask a question in words, e.g. "show latest per axis" (query --list shows them all)
  export   write the dataset as CSV pages, summaries and one XLSX workbook

Settings come from the environment or .env (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, SINK_BATCH_SIZE, ...;
see docs/consumer_db.md); the options below override them for one run.
"""


def utc_time(text: str) -> datetime:
    """ISO-8601; a time without an offset is read as UTC (``common.query_time`` keeps it inside the calendar)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time (e.g. 2022-10-17T12:18:23Z)") from None
    return query_time(value)


positive_int = count_option(1)
zero_or_more = count_option(0)


def positive_seconds(text: str) -> float:
    """A duration in seconds: finite and above 0 (not NaN, not negative)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m consumer_db", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="SQLAlchemy URL of the database (default: DATABASE_URL)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: LOG_LEVEL or INFO")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the sink (the default)",
        description="Consume the readings, alerts "
        "and dead-letter topics into the database, in batches; stop with Ctrl+C or SIGTERM.",
    )
    run.add_argument("--group-id", help="Kafka consumer group (default: SINK_GROUP_ID)")
    run.add_argument(
        "--batch-size", type=positive_int, help="messages per transaction at most (default: SINK_BATCH_SIZE)"
    )
    run.add_argument(
        "--batch-ms", type=positive_int, help="longest wait for a batch to fill, ms (default: SINK_BATCH_MS)"
    )
    run.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")

    migrate = commands.add_parser(
        "migrate",
        help="apply the database migrations",
        description="Bring the schema to the newest revision (or --revision).",
    )
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--show", action="store_true", help="only print the current and the newest revision")

    ingest = commands.add_parser(
        "ingest",
        help="load a controller CSV export into the database (PostgreSQL: readings, one row per reading)",
        description="Parse a controller export with the producer's rules and store it; "
        "re-running it adds nothing. Bad rows go to rejected_readings with their line.",
    )
    ingest.add_argument("--csv", required=True, type=Path, help="the export file")
    ingest.add_argument("--robot-id", help="robot the file belongs to (default: ROBOT_ID)")
    ingest.add_argument("--timezone", help="zone of naive timestamps (default: CSV_TIMEZONE or UTC)")
    ingest.add_argument(
        "--tick-seconds", type=float, help="spacing when the file has no time column (default: TICK_SECONDS)"
    )
    ingest.add_argument(
        "--start-time",
        type=utc_time,
        help="time of the first row when the file has no time column (default: the file's modification time)",
    )
    ingest.add_argument(
        "--backwards-tolerance", type=float, help="seconds time may step back (default: BACKWARDS_TOLERANCE_S)"
    )
    ingest.add_argument("--chunk-rows", type=positive_int, help="readings per transaction (default: INGEST_CHUNK_ROWS)")
    ingest.add_argument("--workers", type=positive_int, default=2, help="parallel database writers (default: 2)")
    ingest.add_argument("--start-row", type=zero_or_more, default=0, help="skip this many data records first")
    # --limit -1 once read nothing, and said so only as "0 readings"
    ingest.add_argument("--limit", type=positive_int, help="read at most this many data records")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")

    query = commands.add_parser(
        "query",
        help='answer a phrase such as "show latest per axis"',
        description="Answer a phrase (case- and space-insensitive); --list shows them.",
    )
    query.add_argument("phrase", nargs="?", help='e.g. "show latest per axis", "show 1-minute peak", "data health"')
    query.add_argument("--list", action="store_true", help="list the known phrases and exit")
    query.add_argument("--robot-id", help="only this robot (default: every robot)")
    query.add_argument("--start", type=utc_time, help="from this time (ISO-8601; no offset = UTC)")
    query.add_argument("--end", type=utc_time, help="up to this time, included")
    query.add_argument(
        "--at", type=utc_time, help="1-minute peak: the minute up to this time (default: the newest reading)"
    )
    query.add_argument(
        "--n", type=positive_int, default=20, help="latest rows: how many (default 20; a number in the phrase wins)"
    )
    query.add_argument(
        "--gap-threshold",
        type=positive_seconds,
        help="data health: gaps longer than this, s (default: GAP_THRESHOLD_S)",
    )
    query.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")

    export = commands.add_parser(
        "export",
        help="write the dataset as CSV pages, summaries and an XLSX workbook",
        description="Write every reading as CSV pages (paged by key), the per-axis summary, "
        "the latest 20 readings, and one XLSX workbook, each file atomically, into --out.",
    )
    export.add_argument("--out", required=True, type=Path, help="directory for the files (created if missing)")
    export.add_argument("--page-size", type=positive_int, help="rows per CSV page (default: EXPORT_PAGE_SIZE)")
    export.add_argument(
        "--sample-rows", type=positive_int, help="readings in the XLSX sample sheet (default: EXPORT_SAMPLE_ROWS)"
    )
    export.add_argument("--robot-id", help="only this robot (default: every robot)")
    export.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def phrase_told(args: argparse.Namespace) -> int | None:
    """``query --list``, no phrase or a misspelt one: answered here, before the settings (pydantic) and the
    logging (asyncio) load, at once whether the database is up or not; None for a phrase to ask."""
    from consumer_db.phrases import UnknownPhrase, find, known_phrases

    try:
        if args.list or not args.phrase:
            print(known_phrases())
            return 0 if args.list else 2
        find(args.phrase)
    except UnknownPhrase as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # stdout closed early (``| head``): one line, as the other commands say it
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return None


def main(argv: list[str] | None = None) -> int:
    # Start-up makes objects that live until the exit (modules, classes, the settings, the engine): no
    # collection during it could free any, yet each walks them all. The command freezes them once its engine is
    # made, then turns the collector back on for its work (consumer_db.commands._start_up_done).
    gc.disable()
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:  # no command: run the sink, with run's defaults
            args = parser.parse_args([*argv, "run"])
        if getattr(args, "start", None) and getattr(args, "end", None) and args.start > args.end:
            parser.error(f"--start {args.start.isoformat()} is after --end {args.end.isoformat()}")
        if args.command == "query" and (told := phrase_told(args)) is not None:
            return told
        from consumer_db.commands import COMMANDS, execute  # after parsing: see the module's docstring

        return execute(COMMANDS[args.command], args)
    finally:
        gc.enable()
