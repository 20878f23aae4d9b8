"""The schema lock's axis list: the ``axes_dim`` table when the database has it, else the settings.

Small and tolerant on purpose: the producer must start without a database (a CSV check on a laptop),
so any failure (no database, no table, no rows for these robots) falls back to ``settings.axes`` and
says why in one log line.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, column, create_engine, make_url, select, table

from common.settings import CommonSettings

logger = logging.getLogger(__name__)

axes_dim = table("axes_dim", column("robot_id"), column("axis_id"), column("active"))


def axis_list(
    settings: CommonSettings, robot_ids: list[str], *, engine: Engine | None = None, from_db: bool = True
) -> list[int]:
    """Active axes of these robots in ``axes_dim`` (their union), or ``settings.axes``."""
    if not from_db:
        return list(settings.axes)
    own = engine is None
    try:
        engine = engine or _probe_engine(settings.database_url.get_secret_value())
        if engine is None:
            return _fallback(settings, "no database file")
        with engine.connect() as conn:
            query = select(axes_dim.c.axis_id).where(axes_dim.c.robot_id.in_(robot_ids), axes_dim.c.active.is_(True))
            axes = sorted({int(a) for a in conn.execute(query.distinct()).scalars()})
    except Exception as exc:  # noqa: BLE001 - any failure means "use the settings", with the reason
        return _fallback(settings, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        if own and engine is not None:
            engine.dispose()
    if not axes:
        return _fallback(settings, f"axes_dim has no active axis for {', '.join(robot_ids[:3])}")
    logger.info("axis list from axes_dim: %s", axes)
    return axes


def _probe_engine(url: str) -> Engine | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or not Path(parsed.database).exists():
            return None  # do not create an empty database file just to look
        return create_engine(parsed)
    return create_engine(parsed, connect_args={"connect_timeout": 3}, pool_pre_ping=True)


def _fallback(settings: CommonSettings, reason: str) -> list[int]:
    logger.info("axis list from settings (%s): %s", reason, list(settings.axes))
    return list(settings.axes)
