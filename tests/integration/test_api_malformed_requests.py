"""Malformed HTTP sent to the API over a raw socket, as any client that reaches the port can: a request line or a
header past aiohttp's 8,190 bytes, control characters in the request line. Each is answered 400 and costs one log
line, escaped; before, aiohttp logged each at ERROR with its traceback (8 lines for a request line too long)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.api_support import api_and_sink, migrated

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
GARBAGE = [
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"b" * 10_000 + b"\r\n\r\n",
    b"GET /\x1b[2J\x07\xff HTTP/1.1\r\nHost: x\r\n\r\n",
]


async def raw_request(port: int, data: bytes) -> bytes:
    """The server's whole answer to ``data`` (it closes the connection after a 400)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


async def test_a_malformed_request_is_a_400_and_one_escaped_log_line(
    pg_url, postgres_admin_url, kafka_env, unique, caplog
):
    owner_url, app = migrated(pg_url, postgres_admin_url, f"m{unique[:6]}")
    try:
        async with api_and_sink(kafka_env, owner_url, app, unique) as running:
            port = int(running.base_url.rsplit(":", 1)[1])
            for data in GARBAGE:
                caplog.clear()
                with caplog.at_level(logging.INFO, logger="aiohttp"):
                    answer = await raw_request(port, data)
                assert answer.startswith(b"HTTP/1.0 400 Bad Request"), answer[:200]
                said = [r for r in caplog.records if r.name.startswith("aiohttp")]
                assert len(said) == 1, [r.getMessage()[:300] for r in said]
                [record] = said
                line = record.getMessage()
                assert record.levelno == logging.INFO and record.exc_info is None, line
                assert line.startswith("refused a malformed request from 127.0.0.1: ") and len(line) < 400, line
                assert line.isprintable() and line.isascii(), line  # no control character reaches the log
            assert (await raw_request(port, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).startswith(
                b"HTTP/1.1 200"
            )
    finally:
        app.dispose()
