"""``python -m api``: serve the HTTP API; ``add-user NAME --role ROLE``, ``issue-token NAME [--days N]`` and
``revoke-tokens NAME`` manage who may use it (the password from API_USER_PASSWORD or a prompt, never an argument).

The HTTP service, Kafka's client and the metrics server are imported only to serve: a user command loads what
it uses (about half the CPU of a start-up; a CLI call on a busy machine is that much quicker)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from datetime import UTC, datetime

from sqlalchemy.exc import OperationalError, ProgrammingError

from api import users
from api.settings import MAX_TOKEN_DAYS, ApiSettings
from common.errors import AxiswatchError
from common.service import run_service, setup_logging
from common.store.db import database_problem, make_engine
from common.store.tables import API_ROLES
from common.store.users import UserError, add_user, record_change


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    add = commands.add_parser("add-user", help="add a user (password from API_USER_PASSWORD or a prompt)")
    add.add_argument("name")
    add.add_argument("--role", choices=API_ROLES, required=True)
    issue = commands.add_parser("issue-token", help="issue a token for a user and print it once")
    issue.add_argument("name")
    issue.add_argument("--days", type=int, help="lifetime in days (default API_TOKEN_DAYS)")
    revoke = commands.add_parser("revoke-tokens", help="revoke every live token of a user")
    revoke.add_argument("name")
    return parser


async def serve(settings: ApiSettings, stop: asyncio.Event) -> int:
    from api import service
    from common.metrics import Health, serving
    from common.wire.kafka import open_bus

    health = Health()
    with serving(health, settings.api_metrics_port):
        bus = open_bus(settings)
        await bus.start()
        try:
            await service.run(settings, bus=bus, stop=stop, health=health)
        finally:
            await bus.stop()
    return 0


def _password(settings: ApiSettings) -> str:
    if settings.api_user_password is not None:
        return settings.api_user_password.get_secret_value()
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise UserError("the two passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = ApiSettings()
        setup_logging(settings.log_level)
        if args.command is None:
            return run_service(lambda stop: serve(settings, stop), settings)
        engine = make_engine(settings.database_url, log_version=False)
        now = datetime.now(UTC)
        try:
            with engine.begin() as conn:
                if args.command == "add-user":
                    add_user(conn, args.name, args.role, _password(settings), now)
                    record_change(conn, "(command line)", now, "add_user", f"user:{args.name}", f"role {args.role}")
                    print(f"user {args.name!r} added as {args.role}")
                elif args.command == "revoke-tokens":
                    print(f"{users.revoke_tokens(conn, args.name, now)} token(s) of {args.name!r} revoked")
                else:
                    days = args.days if args.days is not None else settings.api_token_days
                    if not 1 <= days <= MAX_TOKEN_DAYS:  # past ~2.9 million days its expiry fell off the calendar
                        raise UserError(f"--days must be from 1 to {MAX_TOKEN_DAYS:,} (a century)")
                    token = users.issue_token(conn, args.name, days, now)
                    print(f"token for {args.name!r}, valid {days} days (shown once, only its hash is kept):")
                    print(token)
        finally:
            engine.dispose()
        return 0
    except (AxiswatchError, ValueError, OSError) as exc:
        print(f"api: {exc}", file=sys.stderr)
        return 1
    except (OperationalError, ProgrammingError) as exc:  # away, or not migrated: a line, not the statement
        print(f"api: {database_problem(exc)}", file=sys.stderr)
        return 1
