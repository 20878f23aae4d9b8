"""What the API's integration tests share: a migrated database with the least-privilege roles, and the API
and consumer_db's services running on the real broker, with a bus to publish on as the other services do."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine

from api import service as api_service
from api.settings import ApiSettings
from common.wire.kafka import KafkaBus
from consumer_db import service as sink_service
from consumer_db.migrate import migrate
from consumer_db.settings import ConsumerDbSettings
from tests.integration.test_hostile_outside_client import least_privilege_urls


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(condition, what: str, timeout: float = 60.0):
    async with asyncio.timeout(timeout):
        while not (found := await asyncio.to_thread(condition)):
            await asyncio.sleep(0.1)
    assert found, what
    return found


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def migrated(pg_url: str, postgres_admin_url: str, tag: str) -> tuple[str, Engine]:
    """The owner's URL and an engine of the services' role, on the test database migrated by the owner."""
    owner_url, app_url, _ = least_privilege_urls(pg_url, postgres_admin_url, tag)
    owner = create_engine(owner_url)
    migrate(owner)
    owner.dispose()
    return owner_url, create_engine(app_url)


@dataclass(frozen=True)
class Running:
    base_url: str  # of the API
    publisher: KafkaBus  # started; for what the detectors or the health monitor would publish


@contextlib.asynccontextmanager
async def api_and_sink(
    kafka_env: dict, owner_url: str, app: Engine, unique: str, **api_overrides
) -> AsyncIterator[Running]:
    """The API's and consumer_db's services, as the services' role, until the block ends; the API answers
    /readyz by the time the block starts."""
    app_url = app.url.render_as_string(hide_password=False)
    port = free_port()
    api_settings = ApiSettings(
        _env_file=None, **kafka_env, database_url=app_url, api_host="127.0.0.1", api_port=port, api_metrics_port=0,
        **api_overrides,
    )  # fmt: skip
    sink_settings = ConsumerDbSettings(
        _env_file=None, **kafka_env, database_url=app_url, migration_database_url=owner_url,
        sink_group_id=f"sink-{unique}", sink_metrics_port=0,
    )  # fmt: skip
    stop = asyncio.Event()
    buses = [KafkaBus(api_settings), KafkaBus(sink_settings), KafkaBus(api_settings)]
    for bus in buses:
        await bus.start()
    api_bus, sink_bus, publisher = buses
    tasks = [
        asyncio.create_task(api_service.run(api_settings, bus=api_bus, stop=stop)),
        asyncio.create_task(sink_service.run(sink_settings, bus=sink_bus, stop=stop)),
    ]
    base_url = f"http://127.0.0.1:{port}"
    try:
        await until(lambda: _ready(base_url + "/readyz"), "the API to be ready")
        yield Running(base_url, publisher)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for bus in buses:
            await bus.stop()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:  # not listening yet, or 503 until its first check of the database
        return False
