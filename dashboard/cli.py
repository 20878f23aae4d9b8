"""``python -m dashboard``: serve the dashboard. (The embedded demo with every service is ``python -m demo``.)"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from common.errors import AxiswatchError
from common.service import run_service, setup_logging
from common.store.db import make_engine, safe_url, server_version
from common.wire.kafka import open_bus
from dashboard.auth import NEEDS_DATABASE
from dashboard.service import run
from dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)

EPILOG = """Every option is also a setting (environment variable or .env line), see docs/dashboard.md:
DASHBOARD_PORT, DASHBOARD_ADDRESS, DASHBOARD_ALLOW_WEBSOCKET_ORIGINS, WINDOW_ROWS, X_AXIS_TICKS, STACKED,
DASHBOARD_STALE_SECONDS, DASHBOARD_PUSH_MS, DASHBOARD_ALERT_ROWS, DASHBOARD_SESSION_EXPIRY_MS,
DASHBOARD_GROUP_ID, plus the shared KAFKA_*, DATABASE_URL, READINGS_TOPIC, ALERTS_TOPIC, AXES, ROBOT_ID, BUS."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dashboard",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{serve}")
    # SUPPRESS: options given before the subcommand must not be reset to None by the subparser's defaults.
    serve = sub.add_parser(
        "serve", help="serve the dashboard (the default when no command is given)", argument_default=argparse.SUPPRESS
    )
    for p in (parser, serve):
        add_serve_options(p)
    return parser


def add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, dest="dashboard_port", help="HTTP port (DASHBOARD_PORT, default 5006)")
    p.add_argument(
        "--address",
        dest="dashboard_address",
        help="address to listen on (DASHBOARD_ADDRESS, default 127.0.0.1; 0.0.0.0 for other machines)",
    )
    p.add_argument(
        "--allow-websocket-origin",
        dest="dashboard_allow_websocket_origins",
        help="comma list of host[:port] the page may be opened from (DASHBOARD_ALLOW_WEBSOCKET_ORIGINS)",
    )
    p.add_argument(
        "--window-rows", type=int, dest="window_rows", help="readings per axis in the live window (WINDOW_ROWS)"
    )
    p.add_argument(
        "--x-axis-ticks", choices=["fixed", "auto"], dest="x_axis_ticks", help="X_AXIS_TICKS (default fixed)"
    )
    p.add_argument("--stacked", action="store_const", const=True, dest="stacked", help="stacked areas (STACKED)")
    p.add_argument(
        "--no-database",
        action="store_true",
        default=None,
        dest="no_database",
        help="no history view; the live view needs only the bus (and no sign-in: DASHBOARD_SIGN_IN=false)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if v is not None and k not in ("command", "no_database")}
    try:
        settings = DashboardSettings(**options)
    except ValidationError as exc:
        print(f"dashboard: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if args.no_database and settings.dashboard_sign_in:
        print(f"dashboard: {NEEDS_DATABASE}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        return run_service(lambda stop: serve(settings, stop, use_database=not args.no_database), settings)
    except (AxiswatchError, OSError) as exc:  # a broker that never answered, a topic Kafka refused: one line
        print(f"dashboard: {exc}", file=sys.stderr)
        return 1


async def serve(settings: DashboardSettings, stop: asyncio.Event, *, use_database: bool = True) -> int:
    # No connection yet: a database that is down must not keep the live view from starting.
    engine = make_engine(settings.database_url, log_version=False) if use_database else None
    if engine is not None:
        asyncio.get_running_loop().create_task(asyncio.to_thread(_log_database, engine))
    bus = open_bus(settings)
    await bus.start()
    try:
        await run(settings, bus=bus, stop=stop, engine=engine)
    finally:
        await bus.stop()
        if engine is not None:
            engine.dispose()
    return 0


def _log_database(engine) -> None:
    try:
        with engine.connect() as conn:
            logger.info("database %s: %s", safe_url(engine), server_version(conn))
    except Exception as exc:  # noqa: BLE001 - the history view shows the error too
        logger.warning("database %s not reachable yet (%s); the history view will say so", safe_url(engine), exc)
