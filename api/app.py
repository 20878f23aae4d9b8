"""The aiohttp application: routes, the bearer-token check, and JSON in and out.

Every handler is short: read the request, one call into ``api.queries`` / ``api.users`` in a thread (the
database driver blocks), answer. An acknowledgement goes out through ``common.wire.acknowledge``, the path the
dashboard uses, so it reaches consumer_db and every open page the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

from api import health_routes, maintenance_routes, queries, user_routes, users
from api.openapi import document
from api.settings import ApiSettings
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
    refuse_nul,
    utcnow,
)
from common.metrics import Health
from common.store.users import User, audit_acknowledgement
from common.wire.acknowledge import publish_acknowledgement
from common.wire.bus import Bus
from common.wire.schemas import ACK_NOTE_CHARS, AckOutcome, AlertState, Severity, StoredText

logger = logging.getLogger(__name__)

PUBLIC = frozenset({"/livez", "/readyz", "/openapi.json"})
HEALTH: web.AppKey[Health] = web.AppKey("health", Health)
REQUESTS = Counter("axiswatch_api_requests_total", "Requests answered, by route and status.", ["route", "status"])
ACKNOWLEDGED = Counter("axiswatch_api_acknowledged_total", "Acknowledgements published, by outcome.", ["outcome"])


class AlertQuery(BaseModel):
    """The query string of GET /v1/alerts; pydantic says what is wrong with a bad one."""

    model_config = ConfigDict(extra="forbid")
    robot: str | None = Field(None, max_length=64)
    axis: int | None = Field(None, ge=1)
    state: AlertState | None = None
    severity: Severity | None = None
    since: QueryTime | None = None
    until: QueryTime | None = None
    limit: QueryCount | None = None
    cursor: str | None = Field(None, max_length=500)


class AcknowledgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: AckOutcome
    note: StoredText | None = Field(None, max_length=ACK_NOTE_CHARS)


@web.middleware
async def counted(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unknown"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        REQUESTS.labels(route, str(exc.status)).inc()
        raise
    REQUESTS.labels(route, str(response.status)).inc()
    return response


@web.middleware
async def bearer_auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Every route but the public ones needs ``Authorization: Bearer <token>`` of a valid token."""
    if request.path in PUBLIC:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="axiswatch"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise error(401, "an Authorization: Bearer <token> header is needed", **challenge)
    user = await asyncio.to_thread(_user_of_token, request.app[ENGINE], token.strip())
    if user is None:
        raise error(401, "token unknown, expired or revoked", **challenge)
    request[USER] = user
    return await handler(request)


def _user_of_token(engine: Engine, token: str) -> User | None:
    with engine.connect() as conn:
        return users.user_of_token(conn, token, utcnow())


async def list_alerts(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    query = query_of(AlertQuery, request)
    limit = page_size(settings, query.limit)
    where = queries.AlertFilter(query.robot, query.axis, query.state, query.severity, query.since, query.until)
    try:
        page, next_cursor = await asyncio.to_thread(_alert_page, request.app[ENGINE], where, limit, query.cursor)
    except queries.BadCursor as exc:
        raise error(400, str(exc)) from None
    return json_response({"alerts": [a.model_dump(mode="json") for a in page], "next_cursor": next_cursor})


def _alert_page(engine: Engine, where: queries.AlertFilter, limit: int, cursor: str | None):
    with engine.connect() as conn:
        return queries.alert_page(conn, where, limit, cursor)


async def acknowledge(request: web.Request) -> web.Response:
    user: User = request[USER]
    if not user.may_acknowledge:
        raise error(403, f"role {user.role} may read, not acknowledge")
    try:
        body = AcknowledgeBody.model_validate_json(await request.read())
    except ValidationError as exc:
        raise error(400, problem(exc)) from None
    app, event_id = request.app, request.match_info["event_id"]
    settings, engine = app[SETTINGS], app[ENGINE]
    alert = await asyncio.to_thread(_one_alert, engine, event_id)
    if alert is None:
        raise error(404, "no such event")
    at = utcnow()
    publishing = publish_acknowledgement(
        app[BUS],
        settings.alerts_topic,
        alert,
        user.name,
        at,
        body.outcome,
        body.note,
        maintenance_topic=settings.maintenance_topic,  # "part replaced" is an entry of the maintenance log too
    )
    try:
        acked = await asyncio.wait_for(publishing, settings.api_publish_timeout_s)
    except Exception as exc:  # noqa: BLE001 - the broker is away: nothing was acknowledged, say so
        logger.warning("api: acknowledgement of %r not published: %r", event_id, f"{type(exc).__name__}: {exc}")
        raise error(503, "the acknowledgement could not be published; try again") from None
    # Published: the audit row follows, tried again while the database hiccups.
    await audit_acknowledgement(engine, user, at, event_id, body.outcome, body.note)
    ACKNOWLEDGED.labels(str(body.outcome)).inc()
    logger.info("api: %r acknowledged %r as %s", user.name, event_id, body.outcome)
    return json_response(acked.model_dump(mode="json"))


def _one_alert(engine: Engine, event_id: str):
    with engine.connect() as conn:
        return queries.one_alert(conn, event_id)


async def list_robots(request: web.Request) -> web.Response:
    found = await asyncio.to_thread(_robots, request.app[ENGINE])
    return json_response({"robots": found})


def _robots(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return queries.robots(conn)


async def openapi(request: web.Request) -> web.Response:
    return json_response(document())


async def livez(request: web.Request) -> web.Response:
    return _check(*request.app[HEALTH].is_live())


async def readyz(request: web.Request) -> web.Response:
    return _check(*request.app[HEALTH].is_ready())


def _check(ok: bool, why: str) -> web.Response:
    return web.json_response({"ok": ok, "why": why}, status=200 if ok else 503)


def make_app(settings: ApiSettings, engine: Engine, bus: Bus, health: Health) -> web.Application:
    app = web.Application(middlewares=[counted, bearer_auth, refuse_nul], client_max_size=64 * 1024)
    app[SETTINGS], app[ENGINE], app[BUS], app[HEALTH] = settings, engine, bus, health
    app.router.add_get("/v1/alerts", list_alerts)
    app.router.add_post("/v1/alerts/{event_id}/acknowledge", acknowledge)
    app.router.add_get("/v1/robots", list_robots)
    health_routes.register(app)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/livez", livez)
    maintenance_routes.register(app)
    user_routes.register(app)
    app.router.add_get("/readyz", readyz)
    return app
