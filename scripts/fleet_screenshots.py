"""The Fleet tab's pictures in the docs (docs/img/fleet.png, docs/img/fleet-detail.png), on synthetic wear.

A fleet with wear (``producer.wear``: wear on some robots' axes, stoppages and program changes on all) is run
through consumer_alerts' ``HealthMonitor`` reading by reading, as the stream does; its health events go into a
SQLite file through ``store_health`` and its ``maintenance_due`` events through ``upsert_alerts``, the
functions consumer_db's sink calls. The dashboard is then served on that file and headless Chromium takes the
pictures: the grid, then the most urgent worn axis opened. The fleet's other detectors do not run here: the
few acknowledged detector alerts (for the table of outcomes per detector) and the note on the first
``maintenance_due`` are made up by this script, and said so in the docs.

    .venv/bin/python scripts/fleet_screenshots.py [--robots 8 --worn 4 --days 13 --seed 3 --jobs 2]

About 2.5 s of CPU per robot-day of feed.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from common.store.db import make_engine  # noqa: E402
from common.store.fleet_health import fleet_forecasts  # noqa: E402
from common.store.joint_health import store_health  # noqa: E402
from common.store.tables import alerts, seed_axes  # noqa: E402
from common.wire.schemas import AckOutcome, Alert, AlertState, Severity  # noqa: E402
from consumer_alerts.health.monitor import HealthMonitor  # noqa: E402
from consumer_db.alert_store import upsert_alerts  # noqa: E402
from consumer_db.migrate import migrate  # noqa: E402
from dashboard.fleet_data import fleet_grid  # noqa: E402
from producer.synthetic import SyntheticRobot  # noqa: E402
from producer.wear import wear_plan  # noqa: E402

START = datetime(2026, 1, 5, tzinfo=UTC)
AXES = range(1, 15)
TICK_S = 2.0


def simulate(job: tuple[str, int, int, int, float]) -> tuple[list, list]:
    robot_id, robots, worn, seed, days = job
    plan = wear_plan(robot_ids(robots), seed=seed, worn=worn, axes=range(1, 7))
    robot = SyntheticRobot(
        robot_id, seed=seed, tick_seconds=TICK_S, start=START, axes=AXES, wear=plan.for_robot(robot_id)
    )
    monitor, alerts = HealthMonitor(), []
    for reading in itertools.islice(robot, int(days * 86400 / TICK_S)):
        alerts += monitor.process(reading)
    alerts += monitor.flush()
    return monitor.take_events(), alerts


def robot_ids(n: int) -> list[str]:
    return [f"robot-{i:03d}" for i in range(1, n + 1)]


def made_up_acknowledgements(robots: list[str], end: datetime) -> list[Alert]:
    """A few detector alerts as people might have judged them (the detectors do not run here)."""
    judged = [
        ("zscore", AckOutcome.REAL_FAULT, "cable chafing on the dress pack"),
        ("zscore", AckOutcome.FALSE_ALARM, "new program, heavier part"),
        ("zscore", AckOutcome.FALSE_ALARM, None),
        ("residual", AckOutcome.REAL_FAULT, "gearbox oil low"),
        ("residual", AckOutcome.INSPECTED_OK, None),
        ("residual", AckOutcome.PART_REPLACED, "motor encoder replaced"),
        ("stuck", AckOutcome.INSPECTED_OK, "sensor reconnected"),
    ]
    alerts = []
    for i, (detector, outcome, note) in enumerate(judged):
        opened = end - timedelta(days=2 + i)
        alert = Alert(
            event_id=f"picture-{i}",
            robot_id=robots[i % len(robots)],
            axis=1 + i % 6,
            detector=detector,
            severity=Severity.ALERT,
            state=AlertState.CLOSED,
            opened_at=opened,
            closed_at=opened + timedelta(minutes=4),
            peak_amps=40.0 + i,
            threshold=35.0,
            score=4.2,
        )
        alerts.append(alert.acknowledged("maintenance", opened + timedelta(hours=3), outcome, note))
    return alerts


def build_database(url: str, args) -> None:
    engine = make_engine(url, log_version=False)
    migrate(engine)
    robots = robot_ids(args.robots)
    jobs = [(r, args.robots, args.worn, args.seed, args.days) for r in robots]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(simulate, jobs))
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=robots, axes=AXES)
    due = []
    for events, opened in results:
        for i in range(0, len(events), 2000):
            with engine.begin() as conn:
                store_health(conn, events[i : i + 2000])
        due += opened
    with engine.begin() as conn:
        upsert_alerts(conn, due)
    engine.dispose()


def acknowledge_for_the_picture(url: str, args) -> None:
    """The most urgent axis's open maintenance_due event acknowledged with a note, and the made-up detector
    alerts (idempotent: the same event ids)."""
    engine = make_engine(url, log_version=False)
    with engine.begin() as conn:
        grid = fleet_grid(fleet_forecasts(conn))
        urgent = min((c for c in grid.cells if c.days_left is not None), key=lambda c: c.days_left)
        rows = conn.execute(
            select(alerts).where(
                alerts.c.robot_id == urgent.robot_id,
                alerts.c.axis == urgent.axis,
                alerts.c.detector == "maintenance_due",
            )
        ).mappings()
        events = [Alert.model_validate({k: v for k, v in r.items() if k != "updated_at"}) for r in rows]
        end = grid.reference or START + timedelta(days=args.days)
        acked = [
            e.acknowledged("maintenance", end - timedelta(hours=6), None, "visit booked for Monday") for e in events
        ]
        upsert_alerts(conn, acked + made_up_acknowledgements(robot_ids(args.robots), end))
    engine.dispose()


def take_pictures(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from dashboard.settings import DashboardSettings
    from tests.dashboard_support import ServerThread

    engine = make_engine(url, log_version=False)
    settings = DashboardSettings(_env_file=None, bus="memory", database_url=url, dashboard_sign_in=False)
    model = "Bokeh.documents[0].get_model_by_name('{}')"
    with ServerThread(settings, engine=engine) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 760})
        page.goto(server.url)
        page.wait_for_function(f"() => window.Bokeh && Bokeh.documents.length > 0 && {model.format('alert_table')}")
        page.get_by_text("Fleet", exact=True).click()
        page.wait_for_function(
            f"() => {model.format('fleet_outcomes')} && {model.format('fleet_cells')}.data.label.length"
        )
        page.get_by_text("alerts judged real per detector").wait_for()
        page.mouse.move(5, 5)
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / "fleet.png"), full_page=True)
        # The most urgent robot's most urgent axis: the first cell of the top row with the fewest days left.
        robot, axis = page.evaluate(
            f"""() => {{
                const d = {model.format("fleet_cells")}.data;
                const top = d.robot_id[0];
                let best = 0, days = Infinity;
                d.label.forEach((label, i) => {{
                    const n = label == 'now' ? 0 : parseFloat(label);
                    if (d.robot_id[i] == top && n < days) {{ best = i; days = n; }}
                }});
                return [top, d.axis[best]];
            }}"""
        )
        x, y = page.evaluate(
            """([robot, axis]) => {
                const plot = Bokeh.documents[0].get_model_by_name('fleet_grid');
                const view = Bokeh.index.find_one(plot);
                const box = view.canvas_view.el.getBoundingClientRect();
                return [box.left + view.frame.x_scale.compute(plot.x_range.synthetic(axis)),
                        box.top + view.frame.y_scale.compute(plot.y_range.synthetic(robot))];
            }""",
            [robot, axis],
        )
        page.mouse.click(x, y)
        page.wait_for_function(f"() => {model.format('fleet_days')}.data.ts.length > 0")
        page.mouse.move(5, 5)
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "fleet-detail.png"), full_page=True)
        browser.close()
    engine.dispose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robots", type=int, default=8)
    p.add_argument("--worn", type=int, default=4)
    p.add_argument("--days", type=float, default=13.0)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--db", type=Path, help="SQLite file to build (or reuse, if it exists)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = p.parse_args()
    db = args.db or Path(tempfile.mkdtemp()) / "fleet.sqlite"
    url = f"sqlite:///{db}"
    if not db.exists():
        build_database(url, args)
    acknowledge_for_the_picture(url, args)
    args.out.mkdir(parents=True, exist_ok=True)
    take_pictures(url, args.out)
    print(f"pictures in {args.out} (database {db})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
