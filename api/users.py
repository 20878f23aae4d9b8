"""The API's tokens (users, roles and passwords are ``common.store.users``, shared with the dashboard).

A token is 32 random bytes; only its SHA-256 is stored, which is enough for a secret nobody can guess, and lets
a request be looked up by it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from common.store.tables import api_tokens, api_users
from common.store.users import User, UserError


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
