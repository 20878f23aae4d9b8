"""What the offline subcommands do (train, plot, replay, score), once the settings are built."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace

from common.csvio.controller_csv import CsvOptions
from common.wire.schemas import Reading, ReadingPolicy
from consumer_alerts import offline
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.errors import TrainingError
from consumer_alerts.model import AlertModel
from consumer_alerts.settings import AlertsSettings
from consumer_alerts.sources import db_readings, export_readings
from consumer_alerts.training import TrainingOptions
from consumer_alerts.training import train as fit

logger = logging.getLogger(__name__)
SCORE_MAX_ABS = 1e12  # a bound for `score`'s outside data: squares and sums of values stay finite


def _csv_options(settings: AlertsSettings, args: argparse.Namespace) -> CsvOptions:
    return CsvOptions(
        robot_id=args.robot_id or settings.robot_id,
        axes=settings.axes,
        tick_seconds=settings.tick_seconds,
        policy=settings.reading_policy(),
    )


def train(settings: AlertsSettings, args: argparse.Namespace) -> int:
    robot_id = args.robot_id or settings.robot_id
    if args.from_db:
        from common.store.db import make_engine

        readings = list(db_readings(make_engine(settings.database_url), robot_id=robot_id, until=args.until))
        source = f"database readings_fact, robot {robot_id}"
    else:
        readings = list(export_readings(args.csv, _csv_options(settings, args)))
        source = args.csv.name
    if args.fraction is not None:
        if not 0 < args.fraction <= 1:
            raise ValueError(f"--fraction must be within (0, 1], got {args.fraction}")
        readings = readings[: int(len(readings) * args.fraction)]
    elif args.until is not None:
        readings = [r for r in readings if r.ts < args.until]
    if not readings:
        raise TrainingError(f"no readings to train on in {source}")
    options = TrainingOptions(
        kind=args.kind, window=args.window, surge_amps=args.surge_amps, error_scale=args.error_scale
    )
    model = fit(readings, options, robot_id=robot_id, source=source)
    model.save(args.out)
    print(
        f"model written to {args.out}: {model.kind}, {len(model.axes)} axes, "
        f"{model.training['start']} .. {model.training['end']} ({model.training['rows']} readings)"
    )
    for axis, m in model.axes.items():
        print(
            f"  axis {axis}: R2={m.line.r2:.3f} MinC={m.min_c:.4g} T_LONG={m.t_long_s:g}s "
            f"MaxC={m.max_c:.4g}A over {m.short} sample(s) (T_SHORT~{m.t_short_s:g}s) SurgeC={m.surge_c:.4g}A"
        )
    return 0


def plot(settings: AlertsSettings, args: argparse.Namespace) -> int:
    from consumer_alerts.plot import plot_model  # matplotlib only loads for this command

    model = AlertModel.load(args.model)
    written = plot_model(model, export_readings(args.csv, _csv_options(settings, args)), args.out)
    print(f"{len(written)} picture(s) written to {args.out}")
    return 0


def replay(settings: AlertsSettings, args: argparse.Namespace) -> int:
    model = AlertModel.load(args.model) if args.model else None
    engine = DetectorEngine(EngineConfig.from_settings(settings), model)
    readings: list[Reading] = list(export_readings(args.csv, _csv_options(settings, args)))
    started = time.perf_counter()
    changes = offline.replay(readings, engine)
    seconds = time.perf_counter() - started
    count = offline.write_alerts_csv(changes, args.out)
    events = len({c.alert.event_id for c in changes})
    rate = len(readings) / seconds if seconds > 0 else float("inf")
    print(
        f"{count} change(s) of {events} event(s) from {len(readings)} readings written to {args.out} "
        f"({rate:,.0f} readings/s)"
    )
    return 0


def score(settings: AlertsSettings, args: argparse.Namespace) -> int:
    times, values = offline.read_table(
        args.csv, args.time_column, _names(args.columns), exclude=_names(args.exclude), sep=args.sep
    )
    # Outside data has no model, no idle semantics, and repeated values are normal there: the level
    # detector alone, on every value, with the service's own settings.
    config = replace(EngineConfig.from_settings(settings), detectors=("level",), skip_repeats=False, idle_rule=False)
    engine = DetectorEngine(config)
    # Outside data are not amps (NAB's taxi counts reach 39,000): the time rules apply, the bound is wider.
    policy = settings.reading_policy().model_dump() | {"max_abs_amps": SCORE_MAX_ABS}
    rows = offline.score_rows(times, values, engine, policy=ReadingPolicy(**policy))
    count = offline.write_scores(args.out, list(values.columns), rows)
    # On stderr: the scores may go to stdout (``--out /dev/stdout``, as NAB's scorer reads them).
    print(f"{count} row(s) of scores for {', '.join(map(str, values.columns))} written to {args.out}", file=sys.stderr)
    if stalled := offline.rows_not_forward(times):
        print(f"{stalled} of them not judged: their time is not after an earlier row's (sort by time)", file=sys.stderr)
    return 0


def backfill_health(settings: AlertsSettings, args: argparse.Namespace) -> int:
    from common.store.db import make_engine
    from consumer_alerts.health.backfill import backfill_health as backfill
    from consumer_alerts.health.monitor import HealthConfig

    engine = make_engine(settings.database_url)
    try:
        report = backfill(
            engine,
            HealthConfig.from_settings(settings),
            robot_id=args.robot_id,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        engine.dispose()
    print(
        f"health backfilled: {report.robots} robot(s), {report.readings:,} readings, "
        f"{report.cycles:,} cycle x axis rows, {report.forecasts:,} forecast rows written"
    )
    return 0


def _names(text: str | None) -> list[str] | None:
    """``--columns a,b`` as a list (None when not given)."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None
