"""What every route module of the API shares: the application's keys, JSON answers and JSON errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field, ValidationError
from sqlalchemy import Engine

from api.settings import ApiSettings
from common.counts import read_count
from common.query_time import query_time
from common.store.users import User
from common.wire.schemas import NUL_REFUSED

SETTINGS: web.AppKey[ApiSettings] = web.AppKey("settings", ApiSettings)
ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
BUS: web.AppKey[Any] = web.AppKey("bus", object)
USER: web.RequestKey[User] = web.RequestKey("user", User)  # set by the bearer check
# A time a query string names (since, until, due_before): in UTC and inside the calendar's inner days, so that
# year 1 at +05:00 answers as the calendar's start instead of a 500 (common/query_time.py).
QueryTime = Annotated[AwareDatetime, AfterValidator(query_time)]
# A count a query string names (limit), read as every count is (common/counts.py): a limit of 5,000 digits is
# over API_MAX_PAGE_SIZE as one of 20 is, where pydantic alone answered "exceeded maximum size".
QueryCount = Annotated[int, BeforeValidator(lambda v: read_count(v) if isinstance(v, str) else v), Field(ge=1)]


@web.middleware
async def refuse_nul(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """A 400 for a URL whose path or query string holds a NUL (%00): it names nothing stored, and every route
    would hand it to the database's driver, which refuses it (a 500 before)."""
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise error(400, f"the URL {NUL_REFUSED}")
    return await handler(request)


def utcnow() -> datetime:
    return datetime.now(UTC)


def error(status: int, message: str, **headers: str) -> web.HTTPException:
    """An HTTP error whose body is JSON ``{"error": message}``."""
    kinds = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound}
    kind = kinds.get(status, web.HTTPServiceUnavailable)
    return kind(text=f'{{"error": {json.dumps(message)}}}', content_type="application/json", headers=headers)


def dumps(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def json_response(value: Any) -> web.Response:
    return web.json_response(value, dumps=dumps)


def problem(exc: ValidationError) -> str:
    """What pydantic found wrong with a query string or body, in one line."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())


Q = TypeVar("Q", bound=BaseModel)


def query_of(model: type[Q], request: web.Request) -> Q:
    """The request's query string read by ``model``; a 400 that says what is wrong otherwise."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise error(400, problem(exc)) from None


def page_size(settings: ApiSettings, asked: int | None) -> int:
    """The rows one page holds: what the request asked for, API_PAGE_SIZE if nothing, never more than
    API_MAX_PAGE_SIZE (a 400 says so)."""
    limit = asked or settings.api_page_size
    if limit > settings.api_max_page_size:
        raise error(400, f"limit: at most {settings.api_max_page_size}")
    return limit
