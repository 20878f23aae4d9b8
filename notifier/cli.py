"""``python -m notifier``: follow the alerts topic and deliver notifications; ``--check`` validates the
channel file (and that every secret it names is set) and exits."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from common.errors import AxiswatchError
from common.metrics import Health, serving
from common.service import run_service, setup_logging
from common.wire.kafka import open_bus
from notifier import service
from notifier.config import load_channels
from notifier.settings import NotifierSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m notifier", description=__doc__)
    parser.add_argument("--config", type=Path, help="the channel file (default NOTIFIER_CONFIG)")
    parser.add_argument("--check", action="store_true", help="validate the channel file and exit")
    return parser


async def serve(settings: NotifierSettings, stop: asyncio.Event) -> int:
    config = load_channels(settings.notifier_config)  # a bad file fails here, before any connection
    health = Health()
    with serving(health, settings.notifier_metrics_port):
        bus = open_bus(settings)
        await bus.start()
        try:
            await service.run(settings, bus=bus, stop=stop, health=health, config=config)
        finally:
            await bus.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = NotifierSettings()
        if args.config is not None:
            settings = settings.model_copy(update={"notifier_config": args.config})
        setup_logging(settings.log_level)
        if args.check:
            config = load_channels(settings.notifier_config)
            for channel in config.channels:
                print(f"{channel.name}: {channel.kind}, from {channel.min_severity.value}, changes {channel.changes}")
            return 0
        return run_service(lambda stop: serve(settings, stop), settings)
    except (AxiswatchError, ValueError, OSError) as exc:
        print(f"notifier: {exc}", file=sys.stderr)
        return 1
