"""What the API benchmarks share: the aiohttp app over a scratch database, asked over HTTP with a viewer's
token (looked up on every request, as in service), and the median time of each request."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

from aiohttp.test_utils import TestClient, TestServer

from api import users
from api.app import make_app
from api.settings import ApiSettings
from common.metrics import Health
from common.store import users as accounts
from common.wire.bus import InProcessBus


class ApiClient:
    """``async with ApiClient(engine) as api``: the app on a local port; ``api.get`` answers JSON,
    ``api.timed`` measures a list of cases ``(name, path, params)``."""

    def __init__(self, engine, page_size: int = 100) -> None:
        self.engine, self.page_size = engine, page_size

    async def __aenter__(self) -> ApiClient:
        with self.engine.begin() as conn:
            accounts.add_user(conn, "bench", "viewer", "bench-password", datetime.now(UTC))
            token = users.issue_token(conn, "bench", 1, datetime.now(UTC))
        self.headers = {"Authorization": f"Bearer {token}"}
        self.bus = InProcessBus()
        await self.bus.start()
        settings = ApiSettings(_env_file=None, bus="memory", api_page_size=self.page_size)
        self.client = TestClient(TestServer(make_app(settings, self.engine, self.bus, Health())))
        await self.client.start_server()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.close()
        await self.bus.stop()

    async def get(self, path: str, params: dict | None = None) -> dict:
        response = await self.client.get(path, params=params or {}, headers=self.headers)
        assert response.status == 200, await response.text()
        return await response.json()

    async def timed(self, cases: list[tuple[str, str, dict]], repeats: int) -> list[dict]:
        return [
            {"request": name, "median_ms": await self._median_ms(path, params, repeats)} for name, path, params in cases
        ]

    async def _median_ms(self, path: str, params: dict, repeats: int) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            response = await self.client.get(path, params=params, headers=self.headers)
            await response.read()
            assert response.status == 200, await response.text()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)
