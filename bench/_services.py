"""The end-to-end benchmarks' processes: each service started as ``python -m <service>`` on topics and
consumer groups of its own, stopped the way a deployment stops it (SIGTERM), with its log and CPU time;
and the frame every such benchmark runs in (a scratch database, the broker, aiokafka's C extensions)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

from bench._kafka import PARTITIONS
from bench._postgres import postgres_url, scratch_database

REPO = Path(__file__).resolve().parents[1]


def aiokafka_extensions() -> dict:
    """aiokafka falls back to pure Python silently (about 6x slower): say which record classes are in use."""
    import aiokafka
    from aiokafka import util
    from aiokafka.record import default_records, legacy_records, memory_records

    classes = (
        default_records.DefaultRecordBatchBuilder,
        default_records.DefaultRecordBatch,
        legacy_records.LegacyRecordBatchBuilder,
        memory_records.MemoryRecords,
    )
    in_use = not util.NO_EXTENSIONS and all(c.__module__.startswith("aiokafka.record._crecords") for c in classes)
    if not in_use:
        print(
            "WARNING: aiokafka's C extensions are NOT in use (pure-Python records): numbers will be low",
            file=sys.stderr,
        )
    return {
        "aiokafka": aiokafka.__version__,
        "c_extensions": in_use,
        "record_classes": sorted({c.__module__ for c in classes}),
    }


def kafka_servers(benchmark: str) -> str | None:
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        print(
            f"bench.{benchmark} needs KAFKA_BOOTSTRAP_SERVERS (source /tmp/axiswatch-services.env or `make bench`)",
            file=sys.stderr,
        )
    return servers


def with_services(name: str, measure, *args, keep_logs: bool = False):
    """``measure(engine, servers, *args, log_dir)`` on a scratch database of DATABASE_URL's server and the broker
    of KAFKA_BOOTSTRAP_SERVERS; returns (its result, aiokafka_extensions()), or None when either is not
    configured (the reason on stderr). The services' logs are removed afterwards unless ``keep_logs`` or
    the measurement failed (then their folder is printed)."""
    url, servers = postgres_url(name), kafka_servers(name)
    if url is None or servers is None:
        return None
    extensions = aiokafka_extensions()
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        with scratch_database(url, prefix=f"bench_{name}") as engine:
            result = asyncio.run(cancelled_by_sigterm(measure(engine, servers, *args, log_dir)))
    except BaseException:
        print(f"the services' logs: {log_dir}", file=sys.stderr)
        raise
    if keep_logs:
        print(f"the services' logs: {log_dir}", file=sys.stderr)
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return result, extensions


async def cancelled_by_sigterm(measurement: Awaitable):
    """The measurement, its task cancelled at SIGTERM as asyncio cancels it at Ctrl+C: its ``finally`` stops its
    services (SIGTERM, SIGKILL after a grace). Python's default for SIGTERM ended the benchmark at once and the
    services it had started kept running. Only this task is cancelled, so the Kafka clients its ``finally``
    closes still run: KeyboardInterrupt raised from a signal handler made asyncio cancel every task at once,
    the clients' own too, and a close could then hang (seen in CI); SIGINT passed on is ignored by a process a
    shell started in the background."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    try:
        return await measurement
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@dataclass(frozen=True)
class Names:
    """Topics and consumer groups of one run, unique so runs never see each other's messages."""

    tag: str

    @classmethod
    def fresh(cls, prefix: str) -> Names:
        return cls(f"{prefix}-{uuid.uuid4().hex[:8]}")

    readings = property(lambda self: f"{self.tag}-readings")
    alerts = property(lambda self: f"{self.tag}-alerts")
    dead_letters = property(lambda self: f"{self.tag}-dead")
    sink_group = property(lambda self: f"{self.tag}-sink")
    alerts_group = property(lambda self: f"{self.tag}-alerts")

    def env(self, servers: str, database_url: str, **extra: str) -> dict[str, str]:
        return {
            "BUS": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": servers,
            "DATABASE_URL": database_url,
            "READINGS_TOPIC": self.readings,
            "ALERTS_TOPIC": self.alerts,
            "DEAD_LETTER_TOPIC": self.dead_letters,
            "SINK_GROUP_ID": self.sink_group,
            "ALERTS_GROUP_ID": self.alerts_group,
            "ALERTS_STATE_TOPIC": f"{self.tag}-alerts-state",
            "TOPIC_PARTITIONS": str(PARTITIONS),
            "STATE_PATH": "",
            "LOG_LEVEL": "INFO",
            **extra,
        }


@dataclass
class Service:
    """``python -m <argv>`` in a process of its own, output to ``<log_dir>/<name>.log``; with ``profile`` it
    runs under pyinstrument (bench._profiled) and writes its profile there."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    profile: Path | None = None
    cpu_s: float | None = None
    returncode: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Service:
        prefix = ["bench._profiled", str(self.profile)] if self.profile else []
        self.log_path = self.log_dir / f"{self.name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *prefix, *self.argv],
            cwd=REPO,
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def alive(self) -> bool:
        return self.returncode is None and self._reap(os.WNOHANG) is None

    def stop(self, timeout_s: float = 90.0) -> int:
        """SIGTERM (the services flush and commit, then return), SIGKILL after ``timeout_s``."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.alive():
                self.proc.kill()
                self._reap(0)
        self._log.close()
        return self.returncode

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.returncode

    def _reap(self, flags: int) -> int | None:
        # wait4 instead of Popen.wait: it also gives the process's own CPU time.
        pid, status, usage = os.wait4(self.proc.pid, flags)
        if pid == 0:
            return None
        self.returncode = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        return self.returncode

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_all(services: list[Service]) -> None:
    for service in services:
        if service.proc is not None and service.returncode is None:
            service.stop()


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)
