"""``python -m demo``: the whole pipeline in one process (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from common.service import run_service, setup_logging
from demo import embedded


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=(embedded.__doc__ or "").split("\n\n")[0],
        epilog="Each service also reads its own settings from the environment or .env, see docs/demo.md.",
    )
    embedded.add_demo_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = embedded.demo_options(args)
    except (FileNotFoundError, ValidationError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    setup_logging("INFO")
    embedded.quiet_console()
    return run_service(lambda stop: embedded.run_demo(options, stop))
