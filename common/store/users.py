"""Users, roles, passwords and the audit: the one place both the API and the dashboard's sign-in use.

Passwords are hashed with argon2id (argon2-cffi: the winner of the Password Hashing Competition, memory-hard,
salted, with its parameters in the hash so they can be raised later). The API's tokens are in ``api.users``.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import Connection, Engine, insert, select, update
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from common.store.tables import API_ROLES, api_audit, api_users
from common.wire.schemas import AckOutcome

ROLES = API_ROLES
ACKNOWLEDGE_ROLES = frozenset({"operator", "admin"})
_hasher = PasswordHasher()


@functools.cache
def _absent_hash() -> str:
    """Verified against when the user does not exist, so an unknown name takes as long as a wrong password.
    Made by the first sign-in, whoever it is for (so it tells nothing), not at import: a quarter second of
    CPU that every command and service would pay, signing anyone in or not."""
    return _hasher.hash("no such user")


class UserError(ValueError):
    """A user command that cannot be done (unknown user, name taken, bad role)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def may_acknowledge(self) -> bool:
        return self.role in ACKNOWLEDGE_ROLES


def add_user(conn: Connection, name: str, role: str, password: str, now: datetime) -> None:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if not name.strip() or not password:
        raise UserError("a user needs a name and a password")
    if conn.execute(select(api_users.c.id).where(api_users.c.name == name)).first() is not None:
        raise UserError(f"user {name!r} exists already")
    conn.execute(insert(api_users).values(name=name, role=role, password_hash=_hasher.hash(password), created_at=now))


def set_role(conn: Connection, name: str, role: str) -> None:
    """Give ``name`` another role; it applies to their next sign-in and to their tokens at once."""
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if conn.execute(update(api_users).where(api_users.c.name == name).values(role=role)).rowcount != 1:
        raise UserError(f"no user {name!r}")


def list_users(conn: Connection) -> list[dict]:
    query = select(api_users.c.name, api_users.c.role, api_users.c.created_at).order_by(api_users.c.name)
    return [dict(row) for row in conn.execute(query).mappings()]


def record_change(
    conn: Connection, by: str, at: datetime, action: str, subject: str, note: str | None, outcome: str | None = None
) -> None:
    """One row of the audit: who did ``action`` when (``acknowledge``, ``log_maintenance``, ``add_user``,
    ``set_role``). Its ``event_id`` column names what the row is about: an alert's event, a maintenance entry,
    or ``user:NAME``; ``outcome`` what was found or done."""
    conn.execute(
        insert(api_audit).values(at=at, user_name=by, action=action, event_id=subject, outcome=outcome, note=note)
    )


async def audit(
    engine: Engine, by: str, at: datetime, action: str, subject: str, note: str | None, outcome: str | None = None
) -> None:
    """The audit row of something already published, tried again while the database hiccups."""

    def write() -> None:
        with engine.begin() as conn:
            record_change(conn, by, at, action, subject, note, outcome)

    async for attempt in AsyncRetrying(stop=stop_after_attempt(5), wait=wait_exponential(0.2, max=3), reraise=True):
        with attempt:
            await asyncio.to_thread(write)


def authenticate(conn: Connection, name: str, password: str) -> User | None:
    """The user ``name`` if ``password`` is theirs, else None (unknown name or wrong password alike)."""
    absent = _absent_hash()
    row = conn.execute(select(api_users.c.role, api_users.c.password_hash).where(api_users.c.name == name)).first()
    try:
        ok = _hasher.verify(row.password_hash if row else absent, password)
    except VerificationError:
        return None
    return User(name, row.role) if ok and row else None


def check_password(conn: Connection, name: str, password: str) -> bool:
    return authenticate(conn, name, password) is not None


def record_acknowledgement(
    conn: Connection, user: User, at: datetime, event_id: str, outcome: AckOutcome | None, note: str | None
) -> None:
    record_change(conn, user.name, at, "acknowledge", event_id, note, None if outcome is None else str(outcome))


async def audit_acknowledgement(
    engine: Engine, user: User, at: datetime, event_id: str, outcome: AckOutcome | None, note: str | None
) -> None:
    """The audit row of an acknowledgement already published, tried again while the database hiccups."""
    await audit(engine, user.name, at, "acknowledge", event_id, note, None if outcome is None else str(outcome))
