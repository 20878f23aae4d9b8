"""The maintenance log through the API (docs/maintenance.md): log what was done to a joint without an alert,
read a joint's history, and how people judged each detector's alerts.

An entry goes out on the maintenance topic (``common.wire.acknowledge.publish_maintenance``, the path an
acknowledgement "part replaced" takes too), so consumer_db stores it and consumer_alerts restarts the axis's
baselines when a part was replaced; the API's audit records who logged it.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from sqlalchemy import Engine

from api import users
from api.web import (
    BUS,
    ENGINE,
    SETTINGS,
    USER,
    QueryCount,
    QueryTime,
    error,
    json_response,
    page_size,
    problem,
    query_of,
    utcnow,
)
from common.store import users as accounts
from common.store.maintenance import maintenance_history, outcomes_per_detector
from common.store.tables import axes_of
from common.wire.acknowledge import publish_maintenance
from common.wire.schemas import ACK_NOTE_CHARS, MAX_AXIS, MaintenanceAction, MaintenanceEntry, StoredText

logger = logging.getLogger(__name__)


class MaintenanceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    robot_id: StrictStr = Field(min_length=1, max_length=64)
    axis: int = Field(ge=1, le=MAX_AXIS, strict=True)
    action: MaintenanceAction
    note: StoredText | None = Field(None, max_length=ACK_NOTE_CHARS)


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    robot: str | None = Field(None, max_length=64)
    axis: int | None = Field(None, ge=1, le=MAX_AXIS)
    since: QueryTime | None = None
    until: QueryTime | None = None
    limit: QueryCount | None = None


class OutcomesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    robot: str | None = Field(None, max_length=64)
    since: QueryTime | None = None
    until: QueryTime | None = None


async def log_maintenance(request: web.Request) -> web.Response:
    user: users.User = request[USER]
    if not user.may_acknowledge:
        raise error(403, f"role {user.role} may read, not log maintenance")
    try:
        body = MaintenanceBody.model_validate_json(await request.read())
    except ValidationError as exc:
        raise error(400, problem(exc)) from None
    app = request.app
    settings, engine = app[SETTINGS], app[ENGINE]
    refused = settings.reading_policy().robot_problem(body.robot_id)
    if refused:
        raise error(400, refused)
    if body.axis not in await asyncio.to_thread(_axes, engine, body.robot_id):
        raise error(404, "no such robot and axis")
    entry = MaintenanceEntry.new(body.robot_id, body.axis, body.action, user.name, utcnow(), body.note)
    try:
        await asyncio.wait_for(
            publish_maintenance(app[BUS], settings.maintenance_topic, entry), settings.api_publish_timeout_s
        )
    except Exception as exc:  # noqa: BLE001 - the broker is away: nothing was logged, say so
        logger.warning("api: maintenance entry not published: %r", f"{type(exc).__name__}: {exc}")
        raise error(503, "the entry could not be published; try again") from None
    await accounts.audit(engine, user.name, entry.at, "log_maintenance", entry.entry_id, entry.note, str(entry.action))
    logger.info("api: %r logged %s on %r axis %d", user.name, entry.action, entry.robot_id, entry.axis)
    return web.json_response(entry.model_dump(mode="json"), status=201)


def _axes(engine: Engine, robot_id: str) -> list[int]:
    with engine.connect() as conn:
        return axes_of(conn, robot_id=robot_id).get(robot_id, [])


async def list_maintenance(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    query = query_of(HistoryQuery, request)
    limit = page_size(settings, query.limit)
    rows = await asyncio.to_thread(_history, request.app[ENGINE], query, limit)
    return json_response({"entries": rows})


def _history(engine: Engine, q: HistoryQuery, limit: int) -> list[dict]:
    with engine.connect() as conn:
        return maintenance_history(conn, robot_id=q.robot, axis=q.axis, start=q.since, end=q.until, limit=limit)


async def detector_outcomes(request: web.Request) -> web.Response:
    query = query_of(OutcomesQuery, request)
    rows = await asyncio.to_thread(_outcomes, request.app[ENGINE], query)
    return json_response({"detectors": rows})


def _outcomes(engine: Engine, q: OutcomesQuery) -> list[dict]:
    with engine.connect() as conn:
        return outcomes_per_detector(conn, robot_id=q.robot, start=q.since, end=q.until)


def register(app: web.Application) -> None:
    app.router.add_post("/v1/maintenance", log_maintenance)
    app.router.add_get("/v1/maintenance", list_maintenance)
    app.router.add_get("/v1/detectors/outcomes", detector_outcomes)
