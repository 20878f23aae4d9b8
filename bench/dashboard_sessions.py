"""Dashboard under load: 1 vs 20 concurrent sessions while the synthetic fleet streams, and memory after
200 sessions have been opened and closed.

The server runs in a subprocess of its own (so its CPU time is its own): ``make_server`` with the real
Kafka feed when KAFKA_BOOTSTRAP_SERVERS is set (fresh topics; this process publishes the fleet), else the
in-process bus with the fleet published inside the server process. Sessions are bare websocket clients
speaking Bokeh's protocol (what a tab does, without drawing), all on one asyncio loop. Latency = the moment a
client applied a streamed point minus the reading's timestamp, which is set to the wall clock when the reading
is published: Kafka -> feed -> session document -> websocket -> client.

    .venv/bin/python -m bench.dashboard_sessions [--robots 5] [--tick 0.5] [--seconds 20] [--open-close 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gzip
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime

from bench.results import write_results

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def stream_fleet(bus, topic: str, robots: int, tick: float, stop: threading.Event | asyncio.Event) -> None:
    """The synthetic fleet at real-time pace, each reading stamped with the wall clock as it is sent."""
    from producer.synthetic import synthetic_fleet

    fleet = synthetic_fleet(robots, seed=7, tick_seconds=tick, start=datetime.now(UTC))
    while not stop.is_set():
        started = time.monotonic()
        for _ in range(robots):
            r = next(fleet)
            r = r.model_copy(update={"ts": datetime.now(UTC)})
            await bus.send(topic, r.robot_id, r.to_bytes())
        await bus.flush()
        await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))


# -- the server process --------------------------------------------------------------------------------
def serve(robots: int, tick: float) -> None:
    from common.wire.bus import InProcessBus
    from common.wire.kafka import KafkaBus
    from dashboard.server import make_server, stop_server
    from dashboard.settings import DashboardSettings

    async def main() -> None:
        settings = DashboardSettings()
        bus = KafkaBus(settings) if settings.bus == "kafka" else InProcessBus()
        await bus.start()
        await bus.ensure_topics([settings.readings_topic, settings.alerts_topic])
        server = make_server(settings, bus=bus, engine=None, port=0)
        server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # parent closes stdin: stop
        fleet = (
            asyncio.create_task(stream_fleet(bus, settings.readings_topic, robots, tick, stop))
            if settings.bus == "memory"
            else None
        )
        print(f"READY {server.port}", flush=True)
        await stop.wait()
        if fleet:
            await fleet
        await stop_server(server)
        await bus.stop()

    asyncio.run(main())


# -- the sessions -------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def bokeh_session(port: int):
    """A new dashboard session over a bare websocket speaking Bokeh's protocol, as a browser tab would (without
    drawing): connected, acknowledged, and the document asked for; read the messages with :func:`receive`."""
    import websockets
    from bokeh.util.token import generate_jwt_token, generate_session_id

    token = generate_jwt_token(generate_session_id())
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws", subprotocols=["bokeh", token], origin=f"http://127.0.0.1:{port}", max_size=None
    ) as ws:
        await receive(ws)  # ACK
        for part in ({"msgid": "1", "msgtype": "PULL-DOC-REQ"}, {}, {}):
            await ws.send(json.dumps(part))
        yield ws


async def watch(port: int, latencies: list, opened: asyncio.Event | None = None) -> None:
    """One session; notes, for each streamed point, how old the reading is on arrival."""
    async with bokeh_session(port) as ws:
        while True:  # until cancelled (a timeout here would cut a message in half)
            header, content, buffers = await receive(ws)
            if header["msgtype"] == "PULL-DOC-REPLY" and opened is not None:
                opened.set()
            for event in content.get("events", []) if header["msgtype"] == "PATCH-DOC" else []:
                ts = dict(event["data"]["entries"]).get("ts") if event.get("kind") == "ColumnsStreamed" else None
                if ts is not None:
                    newest = column_values(ts, buffers)[-1]
                    latencies.append((time.monotonic(), time.time() - newest / 1000))


def column_values(column, buffers: dict) -> list[float]:
    """A streamed column's numbers: a plain JSON list (NaN as Bokeh's {"type": "number"} object), or an ndarray."""
    if isinstance(column, list):
        return [float(v["value"]) if isinstance(v, dict) else v for v in column]
    import numpy as np

    return np.frombuffer(array_bytes(column["array"]["data"], buffers), dtype=column["dtype"]).tolist()


def array_bytes(data, buffers: dict) -> bytes:
    """An array's bytes: a binary buffer sent after the message, or base64 inline (gzipped when Bokeh chose to)."""
    raw = buffers[data["id"]] if isinstance(data, dict) else base64.b64decode(data)
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


async def receive(ws) -> tuple[dict, dict, dict]:
    header = json.loads(await ws.recv())
    await ws.recv()  # metadata
    content = json.loads(await ws.recv())
    buffers = {}
    for _ in range(header.get("num_buffers", 0)):
        ref = json.loads(await ws.recv())
        buffers[ref["id"]] = await ws.recv()
    return header, content, buffers


def measure(port: int, pid: int, sessions: int, seconds: float) -> dict:
    latencies: list = []

    async def run() -> tuple[float, float]:
        opened = [asyncio.Event() for _ in range(sessions)]
        tasks = [asyncio.create_task(watch(port, latencies, o)) for o in opened]
        # Every session is open before the window starts; a session that fails says why.
        waiting = asyncio.gather(*(o.wait() for o in opened))
        done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED, timeout=120)
        for task in done:
            if task is not waiting:
                task.result()
                raise RuntimeError("a session ended before the measurement")
        if waiting not in done:
            raise RuntimeError("sessions did not open within 120 s")
        await asyncio.sleep(1)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return cpu, t0

    cpu, t0 = asyncio.run(run())
    lat = sorted(x * 1000 for at, x in latencies if t0 <= at <= t0 + seconds)
    return {
        "sessions": sessions,
        "server_cpu_s_per_s": round(cpu, 3),
        "updates_seen": len(lat),
        "latency_p50_ms": round(statistics.median(lat), 1) if lat else None,
        "latency_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None,
        "server_rss_mib": round(rss_mib(pid), 1),
    }


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.5)


def open_and_close(url: str, pid: int, count: int, expiry_s: float) -> dict:
    """``count`` page loads (each creates a session and its document), left to expire like closed tabs."""

    def health() -> dict:
        with urllib.request.urlopen(url + "health", timeout=10) as response:
            return json.loads(response.read())

    wait_until(lambda: health()["sessions"] == 0, expiry_s * 4 + 60)
    before = rss_mib(pid)
    for _ in range(count):
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
    peak = rss_mib(pid)
    wait_until(lambda: health()["sessions"] == 0, expiry_s * 4 + 60)
    return {
        "sessions_opened_and_closed": count,
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(peak, 1),
        "rss_after_mib": round(rss_mib(pid), 1),
        "sessions_left": health()["sessions"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=5)
    parser.add_argument("--tick", type=float, default=0.5, help="seconds between two readings of one robot")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per session count")
    parser.add_argument("--open-close", type=int, default=200)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.robots, args.tick)
        return 0
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "BUS": "kafka" if kafka else "memory",
        "READINGS_TOPIC": f"bench-readings-{run}",
        "ALERTS_TOPIC": f"bench-alerts-{run}",
        "DASHBOARD_SESSION_EXPIRY_MS": "3000",
        "LOG_LEVEL": "WARNING",
        "TOPIC_PARTITIONS": "3",
        "ROBOT_ID": "robot-001",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.dashboard_sessions",
            "--serve",
            "--robots",
            str(args.robots),
            "--tick",
            str(args.tick),
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}/"
        publisher = start_kafka_fleet(env, args) if kafka else None
        time.sleep(3)  # the window fills and the consumer has its partitions
        rows = [measure(port, server.pid, n, args.seconds) for n in (1, 20)]
        churn = open_and_close(url, server.pid, args.open_close, 3.0)
        if publisher:
            publisher.set()
    finally:
        server.stdin.close()
        server.wait(60)
    notes = (
        f"Feed: {'real Kafka' if kafka else 'in-process bus'}, synthetic fleet of {args.robots} robots, one reading "
        f"per robot every {args.tick} s; the sessions watch robot-001. Open/close: {churn}"
    )
    write_results("dashboard_sessions", rows, notes=notes, extra={"open_close": churn})
    return 0


def start_kafka_fleet(env: dict, args) -> threading.Event:
    from common.settings import CommonSettings
    from common.wire.kafka import KafkaBus

    settings = CommonSettings(
        _env_file=None,
        bus="kafka",
        kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        readings_topic=env["READINGS_TOPIC"],
    )
    stop = threading.Event()

    async def publish() -> None:
        bus = KafkaBus(settings)
        await bus.start()
        try:
            await stream_fleet(bus, settings.readings_topic, args.robots, args.tick, stop)
        finally:
            await bus.stop()

    threading.Thread(target=lambda: asyncio.run(publish()), daemon=True).start()
    return stop


if __name__ == "__main__":
    sys.exit(main())
