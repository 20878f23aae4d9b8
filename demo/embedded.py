"""``python -m demo`` (``make demo``): the whole pipeline in one process, on the embedded default.

    producer ──► in-process bus ──┬─► consumer_db ──► SQLite file ──► dashboard (history)
                                  ├─► consumer_alerts ──► alerts ──► consumer_db, dashboard
                                  └─► dashboard (live)

The four services run their own ``run()`` functions, the very code they run against Kafka and
PostgreSQL; only the bus and the database differ. Before streaming, the alert service's detectors see
earlier, fault-free data of the same feed, so they know what normal current looks like from the first
reading on: hours of the same synthetic robots go through its engine, each robot's model learned from its
own readings as the service learns it (one model pooled over the robots kept a residual ALERT open 666 s
after a fault and raised 10 stray ones, docs/benchmarks.md section 5); an export is one robot, its model
trained on its first 60 %.

Ctrl+C stops the producer, then the detectors (they save their state and commit what they judged, at
once rather than at their next snapshot), lets the sink store everything that was published (so the
SQLite file holds every reading the page showed), then stops the sink and the dashboard.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import sys
import webbrowser
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.csvio.controller_csv import CsvOptions, read_export
from common.store.db import make_engine
from common.wire.bus import InProcessBus
from common.wire.schemas import Reading
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.model import AlertModel
from consumer_alerts.service import run as run_alerts
from consumer_alerts.settings import AlertsSettings
from consumer_alerts.training import train
from consumer_db.service import run as run_sink
from consumer_db.settings import ConsumerDbSettings
from dashboard.service import run as run_dashboard
from dashboard.settings import DashboardSettings
from producer.service import run as run_producer
from producer.settings import ProducerSettings
from producer.synthetic import synthetic_fleet

logger = logging.getLogger(__name__)

TRAINING_HOURS = 8  # of fault-free synthetic feed before the demo's start
DRAIN_TIMEOUT_S = 60.0
# A person at the console needs the address, progress and alerts: not migration scripts, the Bokeh
# server's start-up notes or the model's per-axis fit.
QUIET_LOGGERS = ("alembic", "bokeh", "tornado", "consumer_alerts.training")


@dataclass(frozen=True)
class DemoOptions:
    db: Path
    csv: Path | None
    robots: int
    tick_seconds: float | None
    speed: float
    fault_period_s: float
    port: int
    open_browser: bool
    work_dir: Path


def add_demo_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        type=Path,
        default=Path("axiswatch-demo.sqlite"),
        help="SQLite file the sink writes (default axiswatch-demo.sqlite; kept after the run)",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        metavar="FILE",
        help="replay this controller export instead of the synthetic robots (also: CSV environment variable)",
    )
    parser.add_argument("--robots", type=int, default=2, help="synthetic robots (default 2)")
    parser.add_argument(
        "--tick-seconds",
        type=float,
        default=None,
        help="seconds between two readings of a robot (default TICK_SECONDS, 2.0)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=4.0,
        help="replay the feed this many times faster than its own time (default 4: a tick every 0.5 s)",
    )
    parser.add_argument(
        "--fault-period",
        type=float,
        # A fault lasts up to 0.8 x period / 5 kinds: 864 s here. A drift's load window must hold mostly its
        # later, larger part to rise above the synthetic axes' own swing (at 3600 s, 576 s, most did not).
        default=5400.0,
        dest="fault_period_s",
        help="seconds of feed in which each synthetic robot gets one fault of each kind (default 5400: at the "
        "default speed, a fault every 2 min 15 s of wall-clock time across two robots)",
    )
    parser.add_argument("--port", type=int, default=5006, help="dashboard port (default 5006)")
    parser.add_argument(
        "--no-browser",
        dest="open_browser",
        action="store_false",
        help="do not try to open the dashboard in a web browser",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("var/demo"),
        help="where the demo keeps the detectors' state (default var/demo)",
    )


def demo_options(args: argparse.Namespace) -> DemoOptions:
    csv = args.csv or (Path(os.environ["CSV"]) if os.environ.get("CSV") else None)
    if csv is not None and not csv.is_file():
        raise FileNotFoundError(f"the export {csv} does not exist")
    return DemoOptions(
        args.db,
        csv,
        args.robots,
        args.tick_seconds,
        args.speed,
        args.fault_period_s,
        args.port,
        args.open_browser,
        args.work_dir,
    )


def service_settings(options: DemoOptions):
    """Each service's own settings, from the environment as always, on the embedded bus and database."""
    shared = {"bus": "memory", "database_url": f"sqlite:///{options.db.resolve()}"}
    if options.tick_seconds is not None:
        shared["tick_seconds"] = options.tick_seconds
    producer = ProducerSettings(
        **shared,
        csv_path=options.csv,
        robots=options.robots,
        faults=True,
        replay_speed=options.speed,
        fault_period_s=options.fault_period_s,
        axes_from_db=False,
    )
    sink = ConsumerDbSettings(**shared)
    alerts = AlertsSettings(**shared, state_path=options.work_dir / "alerts-state.json")
    # Sign-in off, said so when the demo starts: the demo is one person's machine, served on 127.0.0.1.
    dashboard = DashboardSettings(**shared, dashboard_port=options.port, dashboard_sign_in=False)
    return producer, sink, alerts, dashboard


def training_readings(settings: ProducerSettings, start: datetime):
    """Fault-free data of the same feed: the first 60 % of the export, or earlier hours of the same robots."""
    if settings.csv_path is not None:
        options = CsvOptions(settings.robot_id, settings.axes, settings.csv_timezone, settings.tick_seconds)
        readings = [r for r in read_export(settings.csv_path, options, log_columns=False) if isinstance(r, Reading)]
        return readings[: int(len(readings) * 0.6)]
    ticks = int(TRAINING_HOURS * 3600 / settings.tick_seconds)
    earlier = start - timedelta(hours=TRAINING_HOURS)
    fleet = synthetic_fleet(
        settings.robots,
        seed=settings.seed,
        tick_seconds=settings.tick_seconds,
        start=earlier,
        axes=settings.axes,
        faults=False,
    )
    return itertools.islice(fleet, ticks * settings.robots)


def prepared_engine(producer: ProducerSettings, alerts: AlertsSettings, start: datetime) -> DetectorEngine:
    """The alert service's engine, having seen the training feed: the synthetic robots' fault-free hours go
    through it, so each robot learns its own model as the service does (MODEL_LEARN_READINGS) and every
    detector's baseline is warm; an export (one robot) gets the model trained on its first 60 %. The events
    of those hours are not the demo's and are dropped."""
    config = EngineConfig.from_settings(alerts)
    if producer.csv_path is not None:
        # its timestamps are the export's own, hours before the demo's: the engine would see one long stoppage
        return DetectorEngine(config, train(training_readings(producer, start), source="demo training feed"))
    engine = DetectorEngine(config)
    # The engine logs each robot's learned model: said here in one line, the console keeps to the demo's steps.
    engine_log = logging.getLogger("consumer_alerts.engine")
    level = engine_log.level
    engine_log.setLevel(logging.WARNING)
    try:
        for reading in training_readings(producer, start):
            engine.process(reading)
    finally:
        engine_log.setLevel(level)
    learned = sum(robot.learner is not None and robot.learner.model is not None for robot in engine.robots.values())
    logger.info(
        "demo: detectors warmed on %d h of fault-free feed; %d of %d robots learned their model",
        TRAINING_HOURS,
        learned,
        len(engine.robots),
    )
    return engine


def train_model(settings: ProducerSettings, path: Path, start: datetime) -> Path:
    model: AlertModel = train(training_readings(settings, start), source="demo training feed")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    logger.info("demo: residual model trained on %s rows, saved to %s", model.training["rows"], path)
    return path


async def run_demo(options: DemoOptions, stop: asyncio.Event) -> int:
    start = datetime.now(UTC).replace(microsecond=0)
    producer, sink, alerts, dashboard = service_settings(options)
    producer = producer.model_copy(update={"start_time": start})
    detectors = await asyncio.to_thread(prepared_engine, producer, alerts, start)
    bus = InProcessBus()
    engine = make_engine(sink.database_url)
    alerts_stop, services_stop = asyncio.Event(), asyncio.Event()
    services = {
        "consumer_db": asyncio.create_task(run_sink(sink, bus=bus, stop=services_stop, engine=engine)),
        "consumer_alerts": asyncio.create_task(run_alerts(alerts, bus=bus, stop=alerts_stop, engine=detectors)),
        "dashboard": asyncio.create_task(run_dashboard(dashboard, bus=bus, stop=services_stop, engine=engine)),
    }
    feed = None
    try:
        await wait_for_port(dashboard.dashboard_address, dashboard.dashboard_port, services)
        announce(dashboard, options)
        feed = asyncio.create_task(run_producer(producer, bus=bus, stop=stop, engine=engine))
        await until_stopped(stop, feed, services)
        report = await feed
        logger.info("demo: producer stopped: %s", report.summary().splitlines()[0] if report else "")
        # The detectors stop next: their clean stop snapshots and commits at once, and their last events
        # are then on the bus for the sink. Waiting for their commit instead meant waiting for a snapshot.
        alerts_stop.set()
        await asyncio.wait([services["consumer_alerts"]], timeout=DRAIN_TIMEOUT_S)
        await drain(bus, sink, {k: v for k, v in services.items() if k != "consumer_alerts"})
        return 0
    finally:
        stop.set()
        alerts_stop.set()
        services_stop.set()
        tasks = {**services, **({"producer": feed} if feed else {})}
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        for name, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                logger.error("demo: %s failed: %r", name, result)
        engine.dispose()
        logger.info("demo: stopped; the readings are in %s", options.db)


async def wait_for_port(host: str, port: int, services: dict[str, asyncio.Task], timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        check_services(services)
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the dashboard did not listen on {host}:{port} within {timeout_s:.0f} s")


def check_services(services: dict[str, asyncio.Task]) -> None:
    """A service that ended on its own while the demo runs has failed: say which and why."""
    for name, task in services.items():
        if task.done():
            error = task.exception() if not task.cancelled() else None
            raise RuntimeError(f"{name} stopped unexpectedly" + (f": {error!r}" if error else ""))


async def until_stopped(stop: asyncio.Event, feed: asyncio.Task, services: dict[str, asyncio.Task]) -> None:
    """Until Ctrl+C; an export that ends keeps the page up until then."""
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            await asyncio.wait([stopping, feed, *services.values()], return_when=asyncio.FIRST_COMPLETED, timeout=1.0)
            check_services(services)
            if feed.done() and feed.exception() is not None:
                raise RuntimeError(f"producer failed: {feed.exception()!r}")
    finally:
        stopping.cancel()


async def drain(bus: InProcessBus, sink: ConsumerDbSettings, services, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Let the sink store every message on the bus before it is stopped."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    sink_topics = [sink.readings_topic, sink.alerts_topic, sink.dead_letter_topic]
    while asyncio.get_running_loop().time() < deadline:
        check_services(services)
        if not bus.uncommitted(sink.sink_group_id, sink_topics):
            return
        await asyncio.sleep(0.05)
    logger.warning(
        "demo: the sink did not catch up within %.0f s; %d message(s) not stored",
        timeout_s,
        bus.uncommitted(sink.sink_group_id, sink_topics),
    )


def quiet_console() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def announce(dashboard: DashboardSettings, options: DemoOptions) -> None:
    host = "localhost" if dashboard.dashboard_address in ("127.0.0.1", "0.0.0.0") else dashboard.dashboard_address
    url = f"http://{host}:{dashboard.dashboard_port}/"
    source = options.csv or (
        f"{options.robots} synthetic robot(s), a fault of each kind every {options.fault_period_s:.0f} s of feed time"
    )
    source = f"{source}, replayed x{options.speed:g}"
    dashboard_line = f"{url} (sign-in off: a local demo)"
    print(
        f"\naxiswatch demo: {source}\n  dashboard: {dashboard_line}\n  database:  {options.db}\n  Ctrl+C stops.\n",
        flush=True,
    )
    if options.open_browser and (os.environ.get("DISPLAY") or sys.platform == "darwin"):
        webbrowser.open(url)
