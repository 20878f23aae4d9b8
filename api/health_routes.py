"""Routes of joint health and maintenance forecasts (docs/health.md): one robot's health per axis, and the
fleet's forecasts most urgent first. Read-only, any role; the bearer check of ``api.app`` covers them.

The answers are built through the pydantic models below, which ``api.openapi`` also writes into the
document, so the document and the answers cannot drift apart.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from api import health_queries, queries
from api.web import ENGINE, SETTINGS, QueryCount, QueryTime, error, json_response, page_size, query_of

ROBOT_ID_CHARS = 64  # the column's width: a longer id names no robot


class Forecast(BaseModel):
    """When an axis's health line is forecast to cross its limit, with the 80 % interval. The days count
    from ``made_at`` (feed time); the ``*_at`` instants are ``made_at`` plus those days. None: no crossing
    within the forecast horizon (120 days)."""

    made_at: datetime
    level: float = Field(description="the trend's deviation from the learned normal (0.30: 30 % more current)")
    slope_per_day: float
    limit: float
    days_left: float | None
    low_days: float | None
    high_days: float | None
    due_at: datetime | None
    due_low_at: datetime | None
    due_high_at: datetime | None


class Cycle(BaseModel):
    """The indicators of one work cycle on one axis."""

    cycle_start: datetime
    cycle_end: datetime
    duration_s: float
    rms_amps: float
    peak_amps: float
    energy_as: float = Field(description="∫A dt over the cycle")
    energy_a2s: float = Field(description="∫A² dt over the cycle")
    covered_s: float
    deviation: float | None = Field(description="rms / learned normal - 1; null while learning, cold or cut")
    cold: bool
    cut: bool


class Day(BaseModel):
    bucket_start: datetime
    cycles: int
    judged: int
    deviation_median: float | None
    deviation_max: float | None
    rms_amps: float
    peak_amps: float


class AxisHealth(BaseModel):
    axis: int
    forecast: Forecast | None
    latest_cycle: Cycle | None
    daily: list[Day] = Field(description="the trend: one row a day, oldest first")


class RobotHealth(BaseModel):
    robot_id: str
    axes: list[AxisHealth]


class FleetForecast(BaseModel):
    robot_id: str
    axis: int
    forecast: Forecast


class ForecastPage(BaseModel):
    forecasts: list[FleetForecast]
    next_cursor: str | None = Field(description="null on the last page")


class HealthQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int = Field(30, ge=1, le=400, description="days of the daily trend, up to the robot's newest day")


class ForecastQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    robot: str | None = Field(None, max_length=ROBOT_ID_CHARS)
    axis: int | None = Field(None, ge=1)
    max_days_left: float | None = Field(None, ge=0)
    due_before: QueryTime | None = None
    limit: QueryCount | None = None
    cursor: str | None = Field(None, max_length=500)


async def robot_health(request: web.Request) -> web.Response:
    robot_id = request.match_info["robot_id"]
    query = query_of(HealthQuery, request)
    found = None
    if len(robot_id) <= ROBOT_ID_CHARS:
        found = await asyncio.to_thread(_robot_health, request.app[ENGINE], robot_id, query.days)
    if found is None:
        raise error(404, "no such robot")
    return json_response(RobotHealth(robot_id=robot_id, axes=found).model_dump(mode="json"))


def _robot_health(engine: Engine, robot_id: str, days: int) -> list[dict] | None:
    with engine.connect() as conn:
        if not health_queries.robot_known(conn, robot_id):
            return None
        return health_queries.robot_health(conn, robot_id, days)


async def list_forecasts(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    query = query_of(ForecastQuery, request)
    limit = page_size(settings, query.limit)
    where = health_queries.ForecastFilter(query.robot, query.axis, query.max_days_left, query.due_before)
    try:
        page, next_cursor = await asyncio.to_thread(_forecast_page, request.app[ENGINE], where, limit, query.cursor)
    except queries.BadCursor as exc:
        raise error(400, str(exc)) from None
    return json_response(ForecastPage(forecasts=page, next_cursor=next_cursor).model_dump(mode="json"))


def _forecast_page(engine: Engine, where: health_queries.ForecastFilter, limit: int, cursor: str | None):
    with engine.connect() as conn:
        return health_queries.forecast_page(conn, where, limit, cursor)


def register(app: web.Application) -> None:
    app.router.add_get("/v1/robots/{robot_id}/health", robot_health)
    app.router.add_get("/v1/health/forecasts", list_forecasts)
