"""Pure shaping of ``common.store.fleet_health`` answers into the Fleet tab's grid, detail and tables.

Days left are counted from the fleet's newest forecast (feed time), not from the server's clock: a replayed
or simulated feed runs in its own time, and an axis whose forecasts stopped (its robot stopped) keeps
counting down towards the crossing it last forecast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

from common.store.fleet_health import FLEET_AXES, days_after
from common.wire.schemas import AckOutcome
from dashboard.columns import epoch_ms

NAN = math.nan
DAY_S = 86_400.0
OUTCOMES = tuple(str(o) for o in AckOutcome)  # the outcome table's columns, one per outcome
# Planning horizons of a maintenance team: a visit this week, this month, later.
WEEK_DAYS, MONTH_DAYS = 7.0, 30.0
# A forecast this much older than the fleet's newest is marked stale in the cell's hover.
STALE_AFTER = timedelta(hours=3)
MIDDAY_MS = DAY_S * 1000 / 2  # a day's point is drawn at its middle

# Health -> cell colour (ColorBrewer RdYlGn, readable with black text).
COLOURS = {
    "crossed": "#d73027",
    "week": "#fc8d59",
    "month": "#fee08b",
    "rising": "#d9ef8b",
    "healthy": "#91cf60",
    "learning": "#e0e0e0",
}
MEANINGS = {
    "crossed": "at or over its limit",
    "week": f"crossing within {WEEK_DAYS:.0f} days",
    "month": f"crossing within {MONTH_DAYS:.0f} days",
    "rising": "later, or none forecast; over half its limit",
    "healthy": "no crossing within a month, under half its limit",
    "learning": "no forecast yet (learning the axis's normal)",
}


@dataclass(frozen=True)
class Cell:
    robot_id: str
    axis: int
    health: str  # a key of COLOURS
    days_left: float | None  # from the fleet's newest forecast; None: no crossing forecast (or no forecast)
    low_days: float | None
    high_days: float | None
    level: float | None
    limit: float | None
    updated_at: datetime | None
    stale: bool

    @property
    def label(self) -> str:
        return days_text(self.days_left, self.health)


@dataclass
class Grid:
    robots: list[str]  # most urgent first
    cells: list[Cell]  # robot by robot in that order, axes 1-8
    reference: datetime | None  # the fleet's newest forecast: "now" for the days left
    urgency: dict[str, float] = field(default_factory=dict)


def days_text(days: float | None, health: str) -> str:
    if health == "learning":
        return "–"
    if health == "crossed":
        return "now"
    if days is None:  # no crossing within the forecast's horizon
        return "∞"
    return f"{days:.1f} d" if days < 10 else f"{days:.0f} d"


def _shift(days: float | None, by_days: float) -> float | None:
    return None if days is None else max(days - by_days, 0.0)


def cell_of(row: dict, reference: datetime | None) -> Cell:
    """One robot's axis from its forecast row (``fleet_forecasts``), its days counted from ``reference``."""
    if row.get("updated_at") is None or reference is None:
        return Cell(row["robot_id"], row["axis"], "learning", None, None, None, None, None, None, False)
    age = reference - row["updated_at"]
    aged = age.total_seconds() / DAY_S
    days, low, high = (_shift(row[k], aged) for k in ("days_left", "low_days", "high_days"))
    level, limit = row["level"], row["limit_level"]
    if level >= limit or days == 0:
        health, days = "crossed", 0.0
    elif days is not None and days <= WEEK_DAYS:
        health = "week"
    elif days is not None and days <= MONTH_DAYS:
        health = "month"
    elif level >= limit / 2:
        health = "rising"
    else:
        health = "healthy"
    return Cell(
        row["robot_id"], row["axis"], health, days, low, high, level, limit, row["updated_at"], age > STALE_AFTER
    )


def urgency(cells: list[Cell]) -> tuple[float, float]:
    """Sort key of a robot: its fewest days left (no crossing = never), then its highest level against
    its limit (so among robots with no crossing forecast the most worn comes first)."""
    days = min((c.days_left for c in cells if c.days_left is not None), default=math.inf)
    worn = max((c.level / c.limit for c in cells if c.level is not None and c.limit), default=-math.inf)
    return days, -worn


def fleet_grid(rows: list[dict]) -> Grid:
    """The grid of ``fleet_forecasts`` rows: robots sorted by urgency (then name), each with axes 1-8."""
    stamps = [r["updated_at"] for r in rows if r.get("updated_at") is not None]
    reference = max(stamps) if stamps else None
    by_robot: dict[str, dict[int, Cell]] = {}
    for row in rows:
        if row["axis"] in FLEET_AXES:
            by_robot.setdefault(row["robot_id"], {})[row["axis"]] = cell_of(row, reference)
    for robot, cells in by_robot.items():  # an axis the database does not know is learning too
        for axis in FLEET_AXES:
            cells.setdefault(axis, cell_of({"robot_id": robot, "axis": axis}, None))
    keys = {robot: urgency(list(cells.values())) for robot, cells in by_robot.items()}
    robots = sorted(by_robot, key=lambda r: (*keys[r], r))
    cells = [by_robot[r][a] for r in robots for a in FLEET_AXES]
    return Grid(robots=robots, cells=cells, reference=reference, urgency={r: keys[r][0] for r in robots})


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def grid_columns(grid: Grid) -> dict[str, list]:
    """The grid's data source: one entry per cell (x = axis, y = robot)."""
    cells = grid.cells
    return {
        "robot_id": [c.robot_id for c in cells],
        "axis": [str(c.axis) for c in cells],
        "colour": [COLOURS[c.health] for c in cells],
        "health": [MEANINGS[c.health] for c in cells],
        "label": [c.label for c in cells],
        "interval": [
            f"{_number(c.low_days, '.1f')} – {_number(c.high_days, '.1f')} d" if c.low_days is not None else "–"
            for c in cells
        ],
        "level": [_number(c.level, ".3f") for c in cells],
        "limit": [_number(c.limit, ".2f") for c in cells],
        "updated": [
            (f"{c.updated_at:%Y-%m-%d %H:%M} UTC" + (" (stale)" if c.stale else "")) if c.updated_at else "–"
            for c in cells
        ],
    }


def legend_html() -> str:
    swatches = "".join(
        f"<span style='display:inline-block;margin-right:12px'><span style='display:inline-block;width:12px;"
        f"height:12px;background:{COLOURS[k]};border:1px solid #999;vertical-align:middle'></span> {escape(m)}</span>"
        for k, m in MEANINGS.items()
    )
    return f"<div style='font-size:12px'>{swatches}</div>"


def outcome_table(rows: list[dict]) -> dict[str, list]:
    """The table of ``common.store.maintenance.outcomes_per_detector``: per detector its alerts, how many were
    judged, each outcome's count and the share judged real (that module's rule; NaN while none is judged)."""
    cols: dict[str, list] = {k: [r[k] for r in rows] for k in ("detector", "alerts", "judged", *OUTCOMES)}
    cols["real_share"] = [NAN if r["real_share"] is None else r["real_share"] for r in rows]
    return cols


@dataclass
class Detail:
    title: str  # HTML, escaped
    hours: dict[str, list]
    days: dict[str, list]
    cone: dict[str, list]  # the 80 % interval: a triangle from now's level to the limit
    forecast: dict[str, list]  # the median forecast: now's level to the crossing
    limit: float | None
    alerts: dict[str, list]
    maintenance: dict[str, list]


def detail_of(robot_id: str, axis: int, data: dict, reference: datetime | None) -> Detail:
    """The detail of one axis from ``axis_detail``; ``reference`` as in the grid (days left from there)."""
    trend = data["trend"]
    hours = [r for r in trend if r["period"] == "hour" and r["deviation_median"] is not None]
    days = [r for r in trend if r["period"] == "day" and r["deviation_median"] is not None]
    forecast = data["forecast"]
    cone: dict[str, list] = {"x": [], "y": []}
    line: dict[str, list] = {"x": [], "y": []}
    limit = None
    summary = "no forecast yet"
    if forecast is not None:
        cell = cell_of({"robot_id": robot_id, "axis": axis, **forecast}, reference or forecast["updated_at"])
        limit, start, level = forecast["limit_level"], forecast["updated_at"], forecast["level"]
        # Each instant is None where it has none (no crossing, or past year 9999): that part is not drawn.
        due, low, high = (days_after(start, forecast[k]) for k in ("days_left", "low_days", "high_days"))
        month = days_after(start, MONTH_DAYS)
        if due is not None:
            line = {"x": [epoch_ms(start), epoch_ms(due)], "y": [level, limit]}
        elif month is not None:  # no crossing within the horizon: the trend's slope over the next month
            line = {"x": [epoch_ms(start), epoch_ms(month)]}
            line["y"] = [level, level + forecast["slope_per_day"] * MONTH_DAYS]
        # The interval's late end may be beyond the horizon (None): the cone then stays open to it.
        late = high if high is not None else days_after(start, MONTH_DAYS * 4)
        if low is not None and late is not None:
            cone = {"x": [epoch_ms(start), epoch_ms(low), epoch_ms(late)], "y": [level, limit, limit]}
        interval = (
            f" (80 %: {_number(cell.low_days, '.1f')} – {_number(cell.high_days, '.1f')} d)"
            if cell.low_days is not None
            else ""
        )
        summary = (
            f"level {level:.3f} of limit {limit:.2f}, {forecast['slope_per_day']:+.4f}/day; "
            f"days left: <b>{escape(cell.label)}</b>{interval}; forecast of {start:%Y-%m-%d %H:%M} UTC"
        )
    title = f"<b>{escape(robot_id)} · axis {axis}</b>: {summary}"
    return Detail(
        title=title,
        hours={
            "ts": [epoch_ms(r["bucket_start"]) for r in hours],
            "median": [r["deviation_median"] for r in hours],
        },
        days={
            "ts": [epoch_ms(r["bucket_start"]) + MIDDAY_MS for r in days],  # in ms: a day of 9999-12-31 too
            "median": [r["deviation_median"] for r in days],
        },
        cone=cone,
        forecast=line,
        limit=limit,
        alerts=alert_columns(data["alerts"]),
        maintenance=maintenance_columns(data["maintenance"]),
    )


def _when(ts: datetime | None) -> float:
    return epoch_ms(ts) if ts is not None else NAN


def alert_columns(rows: list[dict]) -> dict[str, list]:
    return {
        "opened": [_when(r["opened_at"]) for r in rows],
        "closed": [_when(r["closed_at"]) for r in rows],
        "detector": [r["detector"] for r in rows],
        "severity": [r["severity"] for r in rows],
        "state": [r["state"] for r in rows],
        "peak": [r["peak_amps"] if r["peak_amps"] is not None else NAN for r in rows],
        "ack": [
            f"{r['acknowledged_by'] or '?'} at {r['acknowledged_at']:%Y-%m-%d %H:%M}" if r["acknowledged_at"] else ""
            for r in rows
        ],
        "outcome": [r["ack_outcome"] or "" for r in rows],
        "note": [r["ack_note"] or "" for r in rows],
    }


def maintenance_columns(rows: list[dict]) -> dict[str, list]:
    return {
        "at": [_when(r["at"]) for r in rows],
        "what": [r["what"] for r in rows],
        "action": [r["action"] or "" for r in rows],
        "outcome": [r["outcome"] or "" for r in rows],
        "note": [r["note"] or "" for r in rows],
        "by": [r["by"] or "" for r in rows],
    }
