"""``python -m producer``: replay a controller export, or stream a synthetic fleet, into Kafka."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from common.counts import count_option
from common.errors import AxiswatchError
from common.metrics import Health, serving
from common.service import run_service, setup_logging
from common.wire.kafka import open_bus
from producer.dryrun import JsonLinesBus
from producer.settings import ProducerSettings

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m producer",
        description="The controller feed: publish one Kafka message per row (key = robot id) to READINGS_TOPIC, "
        "bad rows to DEAD_LETTER_TOPIC. Options override the environment settings (see docs/producer.md).",
    )
    source = p.add_argument_group("source (default: CSV_PATH when set, else the synthetic fleet)")
    source.add_argument("--csv", type=Path, metavar="FILE", help="controller export to replay (CSV_PATH)")
    source.add_argument("--synthetic", action="store_true", help="stream the synthetic fleet, even if CSV_PATH is set")
    source.add_argument(
        "--robots", type=count_option(1), metavar="N", help="robots of the synthetic fleet (ROBOTS, default 5)"
    )
    source.add_argument(
        "--seed", type=int, metavar="S", help="seed of the fleet and of injected faults (SEED, default 42)"
    )
    source.add_argument("--faults", action="store_true", default=None, help="inject one fault of each kind (FAULTS)")
    source.add_argument(
        "--fault-period",
        dest="fault_period_s",
        type=float,
        metavar="S",
        help="synthetic fleet: seconds of feed per round of one fault of each kind (FAULT_PERIOD_S, default 7200)",
    )
    source.add_argument(
        "--spread",
        dest="spread_robots",
        action="store_true",
        default=None,
        help="synthetic fleet: robots at phases of their own, spread over a tick, not in one burst (SPREAD_ROBOTS)",
    )
    source.add_argument("--labels-out", type=Path, metavar="FILE", help="write the injected faults' labels (CSV) here")
    source.add_argument(
        "--wear",
        dest="wear_robots",
        type=count_option(0),
        metavar="N",
        help="synthetic fleet: N robots with a wearing axis, stoppages and program changes on all (WEAR_ROBOTS)",
    )
    source.add_argument(
        "--wear-labels-out", type=Path, metavar="FILE", help="write the wear labels (true crossing times) here"
    )
    source.add_argument("--robot-id", metavar="ID", help="robot id of the export's rows (ROBOT_ID, default RMBR4-2)")
    source.add_argument("--axes", metavar="LIST", help="axis list when axes_dim is not readable, e.g. 1-14 (AXES)")
    source.add_argument(
        "--no-axes-from-db",
        dest="axes_from_db",
        action="store_false",
        default=None,
        help="do not look up the axis list in the axes_dim table",
    )
    source.add_argument(
        "--timezone", dest="csv_timezone", metavar="TZ", help="zone of naive time stamps (CSV_TIMEZONE)"
    )
    source.add_argument(
        "--start-time",
        type=datetime.fromisoformat,
        metavar="ISO",
        help="first time stamp without a time column / of the fleet (START_TIME, default now)",
    )
    source.add_argument(
        "--backwards-tolerance",
        dest="backwards_tolerance_s",
        type=float,
        metavar="S",
        help="seconds a time stamp may go back before its row is rejected (BACKWARDS_TOLERANCE_S)",
    )
    pace = p.add_argument_group("pacing (default: one tick every TICK_SECONDS)")
    speed = pace.add_mutually_exclusive_group()
    speed.add_argument(
        "--speed",
        dest="replay_speed",
        type=float,
        metavar="X",
        help="replay the feed's own time stamps X times faster (REPLAY_SPEED)",
    )
    speed.add_argument("--max-speed", action="store_true", default=None, help="no pacing; progress bar and rows/s")
    pace.add_argument("--tick-seconds", type=float, metavar="S", help="seconds between two ticks (TICK_SECONDS)")
    pace.add_argument("--catch-up", action="store_true", default=None, help="send late ticks in a burst to make up")
    pace.add_argument(
        "--loop", action="store_true", default=None, help="replay the export again and again, shifted forward"
    )
    pace.add_argument(
        "--start-row",
        type=count_option(0),
        metavar="N",
        help="skip N data rows of the export (N readings of the fleet)",
    )
    pace.add_argument("--limit", type=count_option(1), metavar="N", help="at most N rows (per pass of a looped export)")
    p.add_argument("--dry-run", action="store_true", help="write the messages as JSON lines to stdout, not to Kafka")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="LOG_LEVEL")
    return p


def build_settings(args: argparse.Namespace) -> ProducerSettings:
    overrides = {k: v for k, v in vars(args).items() if v is not None and k not in ("csv", "synthetic", "dry_run")}
    if args.csv is not None:
        overrides["csv_path"] = args.csv
    if args.synthetic:
        if args.csv is not None:
            raise ValueError("--csv and --synthetic exclude each other")
        overrides["csv_path"] = None
    return ProducerSettings(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = build_settings(args)
    except (ValidationError, ValueError) as exc:
        print(f"producer: invalid settings: {exc}", file=sys.stderr)
        return 2
    # With --dry-run stdout carries the messages, so everything else goes to stderr (logging's default).
    setup_logging(settings.log_level)
    return run_service(lambda stop: _run(settings, stop, dry_run=args.dry_run), settings)


async def _run(settings: ProducerSettings, stop: asyncio.Event, *, dry_run: bool) -> int:
    from producer.service import run

    bus = JsonLinesBus() if dry_run else open_bus(settings)
    bar = _progress_bar(_expected_rows(settings)) if settings.max_speed else None
    health = Health()
    try:
        with serving(health, None if dry_run else settings.producer_metrics_port):
            await bus.start()
            try:
                # `is not None`: a tqdm bar without a total (a looped or endless feed) refuses bool()
                progress = bar.update if bar is not None else None
                report = await run(settings, bus=bus, stop=stop, progress=progress, dry_run=dry_run, health=health)
            finally:
                if bar is not None:
                    bar.close()
                await bus.stop()
    except (AxiswatchError, OSError) as exc:
        logger.error("producer failed: %s", exc)
        return 1
    print(report.summary(), file=sys.stderr)
    return 1 if report.unconfirmed else 0


def _expected_rows(settings: ProducerSettings) -> int | None:
    """The bar's total when it is known: the limit, or the export's line count (a quick pass)."""
    if settings.loop:
        return None
    if settings.csv_path is None or not settings.csv_path.is_file():
        return settings.limit
    with open(settings.csv_path, "rb") as f:
        lines = max(sum(1 for _ in f) - 1 - settings.start_row, 0)
    return min(lines, settings.limit) if settings.limit else lines


def _progress_bar(total: int | None):
    from tqdm import tqdm

    # On stderr: with --dry-run, stdout carries the messages.
    return tqdm(total=total, unit=" rows", unit_scale=True, smoothing=0.1, mininterval=0.5, file=sys.stderr)
