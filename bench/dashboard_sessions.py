"""Dashboard under load: 1 vs 20 concurrent sessions while the synthetic fleet streams; and a burst of page
loads (200 from 4 clients) and sessions (50 opened and closed) with the server's longest event-loop stall,
/health's latency while it happens, and memory before and after the sessions are gone.

The server runs in a subprocess of its own (so its CPU time is its own): ``make_server`` with the real
Kafka feed when KAFKA_BOOTSTRAP_SERVERS is set (fresh topics; this process publishes the fleet), else the
in-process bus with the fleet published inside the server process. Sessions are bare websocket clients
speaking Bokeh's protocol (what a tab does, without drawing), all on one asyncio loop. Latency = the moment a
client applied a streamed point minus the reading's timestamp, which is set to the wall clock when the reading
is published: Kafka -> feed -> session document -> websocket -> client.

    .venv/bin/python -m bench.dashboard_sessions [--robots 5] [--tick 0.5] [--seconds 20] [--page-loads 200]
        [--clients 4] [--sessions 50] [--only-burst] [--warm-sessions 0] [--bursts 1] [--linger-s 0]

The event-loop stall is measured inside the server process: a task that sleeps 5 ms notes by how much it
woke late (what every other callback, /health included, waited too). Memory: the RSS, and glibc's own
account of its heap (live allocations, free but kept), before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
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

from bench.results import markdown_table, write_results

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
        try:
            from dashboard.memory import settle  # what dashboard.service.run does once the server is up
        except ImportError:  # the tree before it: service.run froze the start-up objects itself
            import gc

            gc.collect()
            settle = gc.freeze
        settle()
        stop = asyncio.Event()
        stalls = StallMonitor()
        if os.environ.get("BENCH_PROFILE_TURNS"):
            stalls.turns = TurnProfiler(asyncio.get_running_loop())
        monitor = asyncio.create_task(stalls.run(stop))
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(sys.stdin.fileno(), "rb", 0)
        )

        async def commands() -> None:  # "stalls": print the longest stall since the last ask; EOF: stop
            while line := await reader.readline():
                if line.strip() == b"stalls":
                    print("STALLS " + json.dumps(stalls.take() | malloc_figures()), flush=True)
                elif line.strip() == b"trim":  # what the dashboard does after a full collection, now
                    from dashboard.memory import DEFERRED

                    DEFERRED.collect_full()
                    print("STALLS " + json.dumps(malloc_figures()), flush=True)
                if os.environ.get("BENCH_TRACE_MEMORY"):
                    trace_survivors()
            stop.set()

        listening = asyncio.create_task(commands())
        fleet = (
            asyncio.create_task(stream_fleet(bus, settings.readings_topic, robots, tick, stop))
            if settings.bus == "memory"
            else None
        )
        print(f"READY {server.port}", flush=True)
        await stop.wait()
        if fleet:
            await fleet
        await monitor
        listening.cancel()
        await stop_server(server)
        await bus.stop()

    asyncio.run(main())


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def malloc_figures() -> dict:
    """glibc's own account (``mallinfo2``, main arena): bytes in use by live allocations vs free but kept,
    and mmapped blocks; with the RSS it says whether what stays after a burst is live objects or the heap's."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return {
        "heap_in_use_mib": round(info.uordblks / 2**20, 1),
        "heap_free_mib": round(info.fordblks / 2**20, 1),
        "mmapped_mib": round(info.hblkhd / 2**20, 1),
        "threads": threading.active_count(),
    }


_SEEN: set[int] | None = None


def trace_survivors() -> None:
    """``BENCH_TRACE_MEMORY=1``: the first call notes the collector's objects, the next ones print to stderr
    the objects made since and still alive, by type (what pins the heap's pages after a burst)."""
    global _SEEN
    import gc
    from collections import Counter

    gc.collect()
    objects = gc.get_objects()
    if _SEEN is None:
        _SEEN = {id(o) for o in objects}
        return
    new = [o for o in objects if id(o) not in _SEEN]
    kinds = Counter(type(o).__qualname__ for o in new)
    print(f"SURVIVORS {len(new)} of {len(objects)}: {kinds.most_common(30)}", file=sys.stderr)
    owners = Counter()
    for o in new:
        if isinstance(o, dict | list | tuple):
            for r in gc.get_referrers(o)[:2]:
                if r is not objects and r is not new:
                    owners[type(r).__qualname__ + ":" + type(o).__qualname__] += 1
    print(f"OWNERS {owners.most_common(30)}", file=sys.stderr)


class TurnProfiler:
    """What ran in the turn of the loop that took the most CPU (``BENCH_PROFILE_TURNS=1``): every callback
    timed and named (a task's step by its coroutine), summed per name. It wraps every callback, so it costs a
    little: the figures of record are taken without it."""

    def __init__(self, loop) -> None:
        from asyncio import events

        self.longest_s, self.longest = 0.0, {}
        self._turn: dict[str, list] = {}
        run_handle, run_once = events.Handle._run, loop._run_once

        def timed_handle(handle) -> None:
            name, started, cpu = callback_name(handle), time.perf_counter(), time.thread_time()  # before it runs
            try:
                run_handle(handle)
            finally:
                entry = self._turn.setdefault(name, [0, 0.0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - started
                entry[2] += time.thread_time() - cpu

        def timed_turn() -> None:
            self._turn = {}
            run_once()
            spent = sum(cpu for _n, _s, cpu in self._turn.values())  # CPU: the wall time is the machine's load too
            if spent > self.longest_s:
                self.longest_s, self.longest = spent, self._turn

        events.Handle._run = timed_handle
        loop._run_once = timed_turn

    def take(self) -> dict:
        top = sorted(self.longest.items(), key=lambda kv: -kv[1][2])[:8]
        taken = {
            "longest_turn_cpu_ms": round(self.longest_s * 1000, 1),
            "longest_turn": [f"{n} x{c}: {s * 1000:.1f} ms ({cpu * 1000:.1f} CPU)" for n, (c, s, cpu) in top],
        }
        self.longest_s, self.longest = 0.0, {}
        return taken


def callback_name(handle) -> str:
    callback = handle._callback
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        name = "task " + getattr(coro, "__qualname__", repr(coro))
        frame = getattr(coro, "cr_frame", None)
        local = frame.f_locals if frame is not None else {}
        # the piece of a page being built (dashboard.app), or Bokeh's document-locked callback (its first argument)
        inner = local.get("piece") or next(iter(local.get("args") or ()), None)
        return f"{name}({qualified(inner)})" if inner is not None else name
    if getattr(callback, "__name__", "") == "_run_callback" and handle._args:  # tornado's add_callback
        callback = handle._args[0]
    return qualified(callback)


def qualified(callback) -> str:
    while hasattr(callback, "func"):  # functools.partial
        callback = callback.func
    while hasattr(callback, "__wrapped__"):
        callback = callback.__wrapped__
    return getattr(callback, "__qualname__", repr(callback))


class StallMonitor:
    """How late a 5 ms sleep wakes up on the server's loop: the longest stall, and how many over 100 ms; and
    the most CPU the server used while one such sleep waited (on a machine shared with other work a stall's
    wall time is several times its CPU time). The full collections, and the longest, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.turns: TurnProfiler | None = None
        self.longest, self.longest_cpu, self.over_100ms = 0.0, 0.0, 0
        self.full_collections, self.longest_full = 0, 0.0
        self._full_started = 0.0
        import gc

        gc.callbacks.append(self._collection)

    def _collection(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._full_started = time.perf_counter()
        else:
            self.full_collections += 1
            self.longest_full = max(self.longest_full, time.perf_counter() - self._full_started)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            asked, cpu = time.perf_counter(), time.process_time()
            await asyncio.sleep(0.005)
            late = time.perf_counter() - asked - 0.005
            self.longest = max(self.longest, late)
            self.longest_cpu = max(self.longest_cpu, time.process_time() - cpu)
            self.over_100ms += late > 0.1

    def take(self) -> dict:
        taken = {
            "longest_stall_ms": round(self.longest * 1000, 1),
            "longest_stall_cpu_ms": round(self.longest_cpu * 1000, 1),
            "stalls_over_100ms": self.over_100ms,
            "full_collections": self.full_collections,
            "longest_full_collection_ms": round(self.longest_full * 1000, 1),
        }
        self.longest, self.longest_cpu, self.over_100ms = 0.0, 0.0, 0
        self.full_collections, self.longest_full = 0, 0.0
        return taken | (self.turns.take() if self.turns else {})


# -- the sessions -------------------------------------------------------------------------------------
DRAWN = {  # the event a browser sends once it has drawn the page (the dashboard then builds the rest of it)
    "events": [
        {
            "kind": "MessageSent",
            "msg_type": "bokeh_event",
            "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map"}},
        }
    ]
}
LAST_PIECE = '"alert_table"'  # the last model of a page to arrive (whole in the pulled document before pieces)


@contextlib.asynccontextmanager
async def bokeh_session(port: int):
    """A new dashboard session over a bare websocket speaking Bokeh's protocol, as a browser tab would (without
    drawing): connected, acknowledged, the document asked for and said to be drawn (the server answers the
    two in order); read the messages with :func:`receive`."""
    import websockets
    from bokeh.util.token import generate_jwt_token, generate_session_id

    token = generate_jwt_token(generate_session_id())
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws", subprotocols=["bokeh", token], origin=f"http://127.0.0.1:{port}", max_size=None
    ) as ws:
        await receive(ws)  # ACK
        for part in (
            {"msgid": "1", "msgtype": "PULL-DOC-REQ"},
            {},
            {},
            {"msgid": "2", "msgtype": "PATCH-DOC"},
            {},
            DRAWN,
        ):
            await ws.send(json.dumps(part))
        yield ws


async def watch(port: int, latencies: list, opened: asyncio.Event | None = None) -> None:
    """One session; ``opened`` once the whole page is in (its alert table has arrived); notes, for each
    streamed point, how old the reading is on arrival."""
    async with bokeh_session(port) as ws:
        while True:  # until cancelled (a timeout here would cut a message in half)
            header, content, buffers = await receive(ws)
            if opened is not None and not opened.is_set() and LAST_PIECE in json.dumps(content):
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


class HealthProbe:
    """GET /health every 50 ms from a thread of its own; each answer's latency (a stalled loop answers late)."""

    def __init__(self, url: str) -> None:
        self.url, self.latencies, self.failures = url + "health", [], 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as response:
                    response.read()
                self.latencies.append(time.perf_counter() - started)
            except OSError:
                self.failures += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(70)

    def summary(self) -> dict:
        lat = sorted(x * 1000 for x in self.latencies)
        return {
            "health_answers": len(lat),
            "health_p50_ms": round(statistics.median(lat), 1) if lat else None,
            "health_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None,
            "health_max_ms": round(lat[-1], 1) if lat else None,
            "health_failures": self.failures,
        }


def burst(
    url: str,
    port: int,
    server,
    page_loads: int,
    clients: int,
    sessions: int,
    expiry_s: float,
    warm_sessions: int = 0,
    linger_s: float = 0.0,
) -> dict:
    """``page_loads`` GET / from ``clients`` threads (each builds a session that is never connected, like a
    tab closed at once), then ``sessions`` websocket sessions opened together and closed; until every one of
    them has expired. Memory "after" is read once the server has had ``expiry_s`` * 2 more to let go.
    Before, a page load and ``warm_sessions`` whole pages (websocket sessions) opened and closed."""
    from concurrent.futures import ThreadPoolExecutor

    def health() -> dict:
        with urllib.request.urlopen(url + "health", timeout=60) as response:
            return json.loads(response.read())

    def load(_i: int) -> float:
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as response:
            response.read()
        return time.perf_counter() - started

    async def open_and_close(sessions: int) -> None:
        opened = [asyncio.Event() for _ in range(sessions)]
        tasks = [asyncio.create_task(watch(port, [], o)) for o in opened]
        await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 300)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    load(0)  # warm-up: what the first page imports and caches stays for the process's life, not per session
    if warm_sessions:  # and what the first websocket session and whole page do (protocol, serialisation)
        asyncio.run(open_and_close(warm_sessions))
    wait_until(lambda: health()["sessions"] == 0, expiry_s * 4 + 60)
    time.sleep(expiry_s * 2)
    before = rss_mib(server.pid)
    heap_before = {f"{k}_before": v for k, v in ask_stalls(server).items() if k.startswith(("heap", "mmapped"))}
    with HealthProbe(url) as probe:
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            loads = sorted(pool.map(load, range(page_loads)))
        loads_s = time.perf_counter() - started
        peak = rss_mib(server.pid)
        asyncio.run(open_and_close(sessions))
        peak = max(peak, rss_mib(server.pid))
        wait_until(lambda: health()["sessions"] == 0, expiry_s * 4 + 120)
        time.sleep(expiry_s * 2)
        burst_s = time.perf_counter() - started
    stalls = ask_stalls(server)
    after = rss_mib(server.pid)
    lingered = {}
    if linger_s:  # the feed's rows and readings made during the burst have all been replaced by then
        time.sleep(linger_s)
        heap = ask_stalls(server, "trim")
        lingered = {
            "rss_lingered_mib": round(rss_mib(server.pid), 1),
            "heap_in_use_lingered_mib": heap.get("heap_in_use_mib"),
        }
        lingered["rss_lingered_vs_before"] = f"{(lingered['rss_lingered_mib'] / before - 1) * 100:+.1f} %"
    return {
        "page_loads": page_loads,
        "clients": clients,
        "page_loads_s": round(loads_s, 1),
        "page_load_p50_ms": round(loads[len(loads) // 2] * 1000, 1),
        "page_load_max_ms": round(loads[-1] * 1000, 1),
        "sessions_opened_and_closed": sessions,
        "warm_up_sessions": warm_sessions,
        "burst_s": round(burst_s, 1),
        **stalls,
        **probe.summary(),
        **heap_before,
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(peak, 1),
        "rss_after_mib": round(after, 1),
        "rss_after_vs_before": f"{(after / before - 1) * 100:+.1f} %",
        **lingered,
        "sessions_left": health()["sessions"],
    }


def ask_stalls(server, command: str = "stalls") -> dict:
    server.stdin.write(command + "\n")
    server.stdin.flush()
    while not (line := server.stdout.readline()).startswith("STALLS "):
        if not line:
            raise RuntimeError("the server process ended")
    return json.loads(line.split(" ", 1)[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", type=int, default=5)
    parser.add_argument("--tick", type=float, default=0.5, help="seconds between two readings of one robot")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per session count")
    parser.add_argument("--page-loads", type=int, default=200, help="page loads (GET /) in the burst")
    parser.add_argument("--clients", type=int, default=4, help="clients making the page loads at once")
    parser.add_argument("--sessions", type=int, default=50, help="websocket sessions opened and closed")
    parser.add_argument("--only-burst", action="store_true", help="skip the 1 vs 20 sessions measurement")
    parser.add_argument(
        "--warm-sessions", type=int, default=0, help="whole pages opened and closed before the burst's 'before'"
    )
    parser.add_argument(
        "--linger-s", type=float, default=0.0, help="after a burst, wait this long, trim and read the RSS again"
    )
    parser.add_argument("--bursts", type=int, default=1, help="bursts one after another in the same server")
    parser.add_argument("--name", default="dashboard_sessions", help="results file name (bench/results/NAME)")
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
        # every client here is 127.0.0.1: the per-client limit would refuse most of the burst (what it is
        # for, but then the burst would not measure what a page costs)
        "DASHBOARD_SESSIONS_PER_CLIENT": "0",
        "DASHBOARD_SIGN_IN": "false",  # no database here; a signed-in page load costs one cookie check more
        "LOG_LEVEL": "WARNING",
        "TOPIC_PARTITIONS": "3",
        "ROBOT_ID": "robot-001",
    }
    try:  # the allocator python -m dashboard starts with (the tree before had none of its own)
        from dashboard.memory import ALLOCATOR

        env.setdefault("PYTHONMALLOC", ALLOCATOR)
    except ImportError:
        pass
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
        bufsize=1,
    )
    try:
        port = int(server.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}/"
        publisher = start_kafka_fleet(env, args) if kafka else None
        time.sleep(3)  # the window fills and the consumer has its partitions
        rows = [] if args.only_burst else [measure(port, server.pid, n, args.seconds) for n in (1, 20)]
        churns = [
            burst(
                url,
                port,
                server,
                args.page_loads,
                args.clients,
                args.sessions,
                3.0,
                args.warm_sessions if i == 0 else 0,
                args.linger_s,
            )
            for i in range(args.bursts)
        ]
        churn = churns[0]
        if publisher:
            publisher.set()
    finally:
        server.stdin.close()
        server.wait(60)
    notes = (
        f"Feed: {'real Kafka' if kafka else 'in-process bus'}, synthetic fleet of {args.robots} robots, one reading "
        f"per robot every {args.tick} s; the sessions watch robot-001; sessions expire 3 s after they close.\n\n"
        f"Burst (page loads, then sessions opened and closed, until all expired; one row per burst):\n\n"
        f"{markdown_table(churns)}"
    )
    write_results(args.name, rows or churns, notes=notes, extra={"burst": churn, "bursts": churns})
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
