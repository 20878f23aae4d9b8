"""Users and roles through the API, for admins only (docs/api.md, "Users"): list them, add one, change a role.
Every change is a row of the audit (``common.store.users.record_change``), as the command line's ``add-user``
is. Passwords are taken once and kept only as their argon2 hash."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from sqlalchemy import Engine

from api.web import ENGINE, USER, error, json_response, problem, utcnow
from common.store import users
from common.store.users import User, UserError
from common.wire.schemas import StoredText

logger = logging.getLogger(__name__)

Role = Literal["viewer", "operator", "admin"]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StoredText = Field(min_length=1, max_length=200, strict=True)
    role: Role
    password: StrictStr = Field(min_length=12, max_length=1000)


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


def admin_of(request: web.Request) -> User:
    user: User = request[USER]
    if user.role != "admin":
        raise error(403, f"role {user.role} may not manage users")
    return user


async def body_of(model: type[BaseModel], request: web.Request):
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        raise error(400, problem(exc)) from None


async def list_users(request: web.Request) -> web.Response:
    admin_of(request)

    def read(engine: Engine) -> list[dict]:
        with engine.connect() as conn:
            return users.list_users(conn)

    return json_response({"users": await asyncio.to_thread(read, request.app[ENGINE])})


async def add_user(request: web.Request) -> web.Response:
    admin = admin_of(request)
    body: NewUser = await body_of(NewUser, request)

    def write(engine: Engine) -> None:
        now = utcnow()
        with engine.begin() as conn:
            users.add_user(conn, body.name, body.role, body.password, now)
            users.record_change(conn, admin.name, now, "add_user", f"user:{body.name}", f"role {body.role}")

    try:
        await asyncio.to_thread(write, request.app[ENGINE])
    except UserError as exc:
        raise error(400, str(exc)) from None
    logger.info("user %r added as %s by %r", body.name, body.role, admin.name)
    return json_response({"name": body.name, "role": body.role})


async def change_role(request: web.Request) -> web.Response:
    admin = admin_of(request)
    name = request.match_info["name"]
    body: RoleChange = await body_of(RoleChange, request)

    def write(engine: Engine) -> None:
        now = utcnow()
        with engine.begin() as conn:
            users.set_role(conn, name, body.role)
            users.record_change(conn, admin.name, now, "set_role", f"user:{name}", f"role {body.role}")

    try:
        await asyncio.to_thread(write, request.app[ENGINE])
    except UserError as exc:
        raise error(404, str(exc)) from None
    logger.info("user %r is now %s, by %r", name, body.role, admin.name)
    return json_response({"name": name, "role": body.role})


def register(app: web.Application) -> None:
    app.router.add_get("/v1/users", list_users)
    app.router.add_post("/v1/users", add_user)
    app.router.add_put("/v1/users/{name}/role", change_role)
