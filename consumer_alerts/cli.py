"""``python -m consumer_alerts``: the detector service, and its offline twin (train, plot, replay, score)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from common.errors import AxiswatchError
from common.metrics import Health, serving
from common.service import run_service, setup_logging
from common.wire.kafka import open_bus
from consumer_alerts import service
from consumer_alerts.settings import AlertsSettings

logger = logging.getLogger(__name__)
SUBCOMMANDS = ("run", "train", "plot", "replay", "score", "backfill-health")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m consumer_alerts",
        description="Detectors over the joint currents (z-score, regression residual, stuck sensor) and the alert "
        "lifecycle. Settings come from the environment / .env (see docs/consumer_alerts.md); options override them.",
        epilog="Without a subcommand the service runs (`run`). `python -m consumer_alerts COMMAND --help` lists the "
        "options of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,train,plot,replay,score,backfill-health}")
    run = sub.add_parser("run", help="consume readings, publish alert events (the default)")
    run.add_argument("--model", type=Path, help="model file from `train` (overrides MODEL_PATH)")
    run.add_argument("--state", type=Path, help="snapshot file of the detectors' state (overrides STATE_PATH)")

    train = sub.add_parser("train", help="fit the per-axis expected-current model and learn its thresholds")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="controller export to train on")
    source.add_argument("--from-db", action="store_true", help="train on readings_fact in DATABASE_URL")
    span = train.add_mutually_exclusive_group(required=True)
    span.add_argument("--fraction", type=float, help="train on the first F (0-1] of the readings")
    span.add_argument("--until", type=_time, help="train on the readings before TIME (ISO-8601; naive = UTC)")
    train.add_argument("--out", type=Path, required=True, help="model file to write (JSON)")
    train.add_argument(
        "--kind",
        choices=("density", "line"),
        default="density",
        help="expected-current model: density (default, the better one) or line (the lab's)",
    )
    train.add_argument("--window", type=int, default=160, help="active samples in the ALERT statistic (160)")
    train.add_argument("--surge-amps", type=float, default=15.0, help="surge size an ERROR is meant for (15 A)")
    train.add_argument(
        "--error-scale",
        type=float,
        default=1.4,
        help="MaxC is learnt on the training data scaled by this, so overloads stay ALERTs (1.4)",
    )
    _robot(train)

    plot = sub.add_parser("plot", help="per axis: the fit over the data and the residuals with MinC/MaxC")
    plot.add_argument("--model", type=Path, required=True, help="model file from `train`")
    plot.add_argument("--csv", type=Path, required=True, help="controller export to plot")
    plot.add_argument("--out", type=Path, required=True, help="folder for axisN.png and residual-axisN.png")
    _robot(plot)

    replay = sub.add_parser(
        "replay", help="run the service's detectors over a file; one CSV row per published change of an event"
    )
    replay.add_argument("--csv", type=Path, required=True, help="controller export to replay")
    replay.add_argument(
        "--model",
        type=Path,
        help="model file (without one the engine learns the robot's model after MODEL_LEARN_READINGS active readings)",
    )
    replay.add_argument("--out", type=Path, required=True, help="alerts CSV to write")
    _robot(replay)

    score = sub.add_parser("score", help="per-row anomaly score in [0, 1] per column, for any CSV")
    score.add_argument("--csv", type=Path, required=True, help="any CSV with a time column and numeric columns")
    score.add_argument("--time-column", required=True, help="name of the time column (naive times are UTC)")
    score.add_argument("--columns", help="comma-separated columns to score (default: every numeric one)")
    score.add_argument("--exclude", help="comma-separated columns not to score (e.g. a label column)")
    score.add_argument("--sep", choices=(",", ";"), help="field separator (default: sniffed from the header)")
    score.add_argument("--out", type=Path, required=True, help="scores CSV to write: timestamp,<column>_score...")

    backfill = sub.add_parser(
        "backfill-health", help="compute the health tables (cycles, rollups, forecasts) from the stored readings"
    )
    backfill.add_argument("--robot-id", help="only this robot (default: every robot in readings_fact)")
    return parser


def _robot(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot-id", help="robot id of the file's readings (default ROBOT_ID)")


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def serve(settings: AlertsSettings, args: argparse.Namespace, stop: asyncio.Event) -> int:
    updates = {k: v for k, v in (("model_path", args.model), ("state_path", args.state)) if v is not None}
    settings = settings.model_copy(update=updates)
    engine = service.build_engine(settings)  # a bad model file fails here, before any connection
    health = Health()
    with serving(health, settings.alerts_metrics_port):
        bus = open_bus(settings)
        await bus.start()
        try:
            await service.run(settings, bus=bus, stop=stop, engine=engine, health=health)
        finally:
            await bus.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    args = build_parser().parse_args(argv)
    try:
        settings = AlertsSettings()
        setup_logging(settings.log_level)
        if args.command == "run":
            return run_service(lambda stop: serve(settings, args, stop), settings)
        from consumer_alerts import commands  # pandas, matplotlib: only the offline commands need them

        return getattr(commands, args.command.replace("-", "_"))(settings, args)
    except (AxiswatchError, ValueError, OSError) as exc:
        print(f"consumer_alerts {args.command}: {exc}", file=sys.stderr)
        return 1
