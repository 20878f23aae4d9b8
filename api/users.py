"""Users, roles, tokens and the audit: the API's part of the database.

Passwords are hashed with argon2id (argon2-cffi: the winner of the Password Hashing Competition, memory-hard,
salted, with its parameters in the hash so they can be raised later). A token is 32 random bytes; only its
SHA-256 is stored, which is enough for a secret nobody can guess, and lets a request be looked up by it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import Connection, insert, select, update

from common.store.tables import API_ROLES, api_audit, api_tokens, api_users
from common.wire.schemas import AckOutcome

ACKNOWLEDGE_ROLES = frozenset({"operator", "admin"})
_hasher = PasswordHasher()


class UserError(ValueError):
    """A user command that cannot be done (unknown user, name taken, bad role)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def may_acknowledge(self) -> bool:
        return self.role in ACKNOWLEDGE_ROLES


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(conn: Connection, name: str, role: str, password: str, now: datetime) -> None:
    if role not in API_ROLES:
        raise UserError(f"role must be one of {', '.join(API_ROLES)}")
    if not name.strip() or not password:
        raise UserError("a user needs a name and a password")
    if conn.execute(select(api_users.c.id).where(api_users.c.name == name)).first() is not None:
        raise UserError(f"user {name!r} exists already")
    conn.execute(insert(api_users).values(name=name, role=role, password_hash=_hasher.hash(password), created_at=now))


def check_password(conn: Connection, name: str, password: str) -> bool:
    stored = conn.execute(select(api_users.c.password_hash).where(api_users.c.name == name)).scalar()
    if stored is None:
        return False
    try:
        return _hasher.verify(stored, password)
    except VerificationError:
        return False


def issue_token(conn: Connection, name: str, days: int, now: datetime) -> str:
    """A new token for ``name``, valid ``days``; the token itself is returned once and stored nowhere."""
    user_id = conn.execute(select(api_users.c.id).where(api_users.c.name == name)).scalar()
    if user_id is None:
        raise UserError(f"no user {name!r}")
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(api_tokens).values(
            token_hash=hash_token(token), user_id=user_id, created_at=now, expires_at=now + timedelta(days=days)
        )
    )
    return token


def revoke_tokens(conn: Connection, name: str, now: datetime) -> int:
    """Revoke every live token of ``name`` (a token lost, a person gone); returns how many."""
    user_id = conn.execute(select(api_users.c.id).where(api_users.c.name == name)).scalar()
    if user_id is None:
        raise UserError(f"no user {name!r}")
    live = (api_tokens.c.user_id == user_id) & api_tokens.c.revoked_at.is_(None) & (api_tokens.c.expires_at > now)
    return conn.execute(update(api_tokens).where(live).values(revoked_at=now)).rowcount


def user_of_token(conn: Connection, token: str, now: datetime) -> User | None:
    """The user a token stands for, or None: unknown, expired or revoked."""
    row = conn.execute(
        select(api_users.c.name, api_users.c.role)
        .select_from(api_tokens.join(api_users, api_users.c.id == api_tokens.c.user_id))
        .where(
            api_tokens.c.token_hash == hash_token(token),
            api_tokens.c.revoked_at.is_(None),
            api_tokens.c.expires_at > now,
        )
    ).first()
    return None if row is None else User(row.name, row.role)


def record_acknowledgement(
    conn: Connection, user: User, at: datetime, event_id: str, outcome: AckOutcome, note: str | None
) -> None:
    conn.execute(
        insert(api_audit).values(
            at=at, user_name=user.name, action="acknowledge", event_id=event_id, outcome=str(outcome), note=note
        )
    )
