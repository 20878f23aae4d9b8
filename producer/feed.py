"""Where the rows come from: a controller export (once, or looped) or the synthetic fleet."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from common.csvio.controller_csv import CsvOptions, column_report, read_export
from common.wire.schemas import DeadLetter, Reading
from producer.axes import axis_list
from producer.faults import FaultLabel, FaultSpec, busy_periods, default_faults, inject_faults, labels_for
from producer.settings import ProducerSettings
from producer.synthetic import FAULT_PERIOD_S, PROFILES, robot_ids, synthetic_fleet
from producer.wear import WearPlan, wear_plan, write_wear_labels

logger = logging.getLogger(__name__)

Item = Reading | DeadLetter


@dataclass
class Feed:
    items: Iterator[Item]
    description: str
    robot_ids: list[str]
    labels: Callable[[datetime], list[FaultLabel]] | None = None
    """Labels of the injected faults up to a time stamp; None without faults."""


def open_feed(settings: ProducerSettings, *, engine: Engine | None = None) -> Feed:
    """The feed the settings describe. Blocking (reads the axis list, maybe a whole file for faults):
    call it through ``asyncio.to_thread`` from async code."""
    start = settings.start_time or datetime.now(UTC).replace(microsecond=0)
    if settings.csv_path is not None:
        axes = axis_list(settings, [settings.robot_id], engine=engine, from_db=settings.axes_from_db)
        options = CsvOptions(
            settings.robot_id,
            axes,
            settings.csv_timezone,
            settings.tick_seconds,
            start,
            settings.backwards_tolerance_s,
            settings.reading_policy(),
        )
        return csv_feed(
            settings.csv_path,
            options,
            start_row=settings.start_row,
            limit=settings.limit,
            loop=settings.loop,
            faults=settings.faults,
            seed=settings.seed,
        )
    robots = robot_ids(settings.robots)
    axes = axis_list(settings, robots, engine=engine, from_db=settings.axes_from_db)
    wear = None
    if settings.wear_robots:
        working = [a for a in axes if PROFILES.get(a, (0.0,))[0] >= 1.0]  # not the near-idle axis 8
        wear = wear_plan(robots, seed=settings.seed, worn=settings.wear_robots, axes=working)
        if settings.wear_labels_out is not None:
            write_wear_labels(wear.labels(), settings.wear_labels_out, start=start)
    return fleet_feed(
        settings.robots,
        seed=settings.seed,
        tick_seconds=settings.tick_seconds,
        start=start,
        axes=axes,
        faults=settings.faults,
        start_row=settings.start_row,
        limit=settings.limit,
        fault_period_s=settings.fault_period_s,
        wear=wear,
        spread=settings.spread_robots,
    )


def csv_feed(
    path: Path,
    options: CsvOptions,
    *,
    start_row: int = 0,
    limit: int | None = None,
    loop: bool = False,
    faults: bool = False,
    seed: int = 0,
) -> Feed:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"the export {path} does not exist")
    if options.start_time is None:  # fixed once, so that every pass of a loop starts from it
        options = replace(options, start_time=datetime.now(UTC).replace(microsecond=0))
    column_report(path, options).log(logger)
    items = _replay(path, options, start_row, limit, loop)
    description = f"{path.name} as {options.robot_id}" + (" (looped)" if loop else "")
    if not faults:
        return Feed(items, description, [options.robot_id])
    specs = export_faults(path, options, seed=seed, start_row=start_row, limit=limit)
    return Feed(
        inject_faults(items, specs),
        description + " with injected faults",
        [options.robot_id],
        labels=lambda until: labels_for(s for s in specs if s.start < until),
    )


def export_faults(
    path: Path, options: CsvOptions, *, seed: int, start_row: int = 0, limit: int | None = None
) -> list[FaultSpec]:
    """One fault of each kind over the export's working periods (a first pass over the file)."""
    readings = [
        r
        for r in read_export(path, options, start_row=start_row, limit=limit, log_columns=False)
        if isinstance(r, Reading)
    ]
    if not readings:
        return []
    span = (readings[-1].ts - readings[0].ts).total_seconds() + options.tick_seconds
    return default_faults(
        readings[0].ts, span, options.axes, seed, busy=busy_periods(readings), robot_id=options.robot_id
    )


def fleet_feed(
    robots: int,
    *,
    seed: int,
    tick_seconds: float,
    start: datetime,
    axes: list[int],
    faults: bool = False,
    start_row: int = 0,
    limit: int | None = None,
    fault_period_s: float = FAULT_PERIOD_S,
    wear: WearPlan | None = None,
    spread: bool = False,
) -> Feed:
    fleet = synthetic_fleet(
        robots,
        seed=seed,
        tick_seconds=tick_seconds,
        start=start,
        axes=axes,
        faults=faults,
        fault_period_s=fault_period_s,
        wear=wear,
        spread=spread,
    )
    stop = None if limit is None else start_row + limit
    description = f"synthetic fleet of {robots} robots (seed {seed}{', faults' if faults else ''}"
    description += ", spread over a tick" if spread else ""
    description += f", wear on {sum(bool(r.specs) for r in wear.robots.values())})" if wear else ")"
    return Feed(
        itertools.islice(fleet, start_row, stop),
        description,
        robot_ids(robots),
        labels=fleet.labels if faults else None,
    )


def _replay(path: Path, options: CsvOptions, start_row: int, limit: int | None, loop: bool) -> Iterator[Item]:
    """The export once, or again and again with time stamps shifted past the previous pass. Bad rows
    are dead-lettered on the first pass only: they are the same rows every time."""
    shift, first_pass = timedelta(0), True
    while True:
        first = last = None
        for item in read_export(path, options, start_row=start_row, limit=limit, log_columns=False):
            if isinstance(item, DeadLetter):
                if first_pass:
                    yield item
                continue
            first, last = first or item.ts, item.ts
            yield item.model_copy(update={"ts": item.ts + shift}) if shift else item
        if not loop or first is None:
            return
        shift += last - first + timedelta(seconds=options.tick_seconds)
        first_pass = False
