"""The load curve: bench.pipeline_latency's run (every service a process of its own, faults on, dashboard
sessions open) at several fleet sizes in turn, each at the real rate (one reading per robot every 2 s) and
held for --hold-s, a fresh database and fresh topics per level.

    .venv/bin/python -m bench.load_curve [--robots 100,500,1000,2000] [--hold-s 600] [--history-s 3600] [--warmup 20]
        [--sessions 5] [--max-lag-s 60] [--spread] [--alerts-instances 1] [--set NAME=VALUE ...]
        [--profile SERVICE] [--keep-logs] [--name load_curve]

Per level: readings/s produced and committed by consumer_db; p50/p99 of reading -> stored, -> alert event,
-> dashboard (pipeline_latency's clocks); CPU of each service, of PostgreSQL (all its processes) and of the
broker, from /proc over the held time; database growth (every table with its indexes, per reading stored,
times the fleet's readings per day); the machine's load average. Every --sample-s the groups' lag is read
from Kafka (high watermark minus committed offset): a level whose lag is past --max-lag-s of input and has
not shrunk over the last minute ends there, marked as fallen behind, and the curve goes on with the next
level (a lag that rises more slowly is named in the verdict at the level's end). Each level's fleet is warm
first (pipeline_latency's --history-s); a level whose alert clock has no event says so in its row.
Results are written after each level, so a run stopped part-way keeps the levels it finished.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import text

from bench._kafka import Progress
from bench._services import with_services
from bench.pipeline_latency import Run, add_run_arguments, latencies, measure, no_events
from bench.results import write_results

READING_INTERVAL_S = 2.0  # the synthetic fleet's real rate: one reading per robot every 2 s
READINGS_PER_ROBOT_DAY = 86_400 / READING_INTERVAL_S
LAG_WINDOW_S = 40.0  # longer than consumer_alerts' 30 s between two commits
# A lag floor above this, rising by more than this many seconds of input per second: not keeping up (a
# held level that ends before --max-lag-s is reached still says so).
GROWING_FLOOR_S, GROWING_SLOPE = 10.0, 0.02
CATCH_UP_S = 60.0  # a lag past --max-lag-s must have shrunk over this long, or the level ends
TICK_S = os.sysconf("SC_CLK_TCK")
TABLES_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_stat_user_tables
"""  # every table with its indexes and TOAST


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads), in clock ticks; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command's name, which may hold spaces
    return int(fields[11]) + int(fields[12])


def listening_pid(port: int) -> int | None:
    """The process that listens on ``port`` (the broker of KAFKA_BOOTSTRAP_SERVERS), found through its socket."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    return None


class Held:
    """The hold of one level: the producer runs for the warm-up and --hold-s while this samples the groups'
    lag and the load; it ends early when a group falls behind. CPU and the database's size are read at the
    warm-up's end and at the hold's end."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    async def __call__(self, run: Run) -> dict:
        args, rate = self.args, run.args.robots / READING_INTERVAL_S
        groups = {"consumer_db": run.names.sink_group, "consumer_alerts": run.names.alerts_group}
        broker = listening_pid(int(urlsplit(f"//{run.servers.split(',')[0]}").port))
        samples, loads, verdict = [], [], "kept up"
        async with Progress(run.servers, run.names.readings, groups) as progress:
            await asyncio.sleep(args.warmup)
            first = await progress.sample()
            before = self._cpu(run, broker) | {"bytes": self._bytes(run)}
            deadline = time.monotonic() + args.hold_s
            while time.monotonic() < deadline:
                await asyncio.sleep(min(args.sample_s, max(0.0, deadline - time.monotonic())))
                row = await progress.sample()
                loads.append(os.getloadavg()[0])
                samples.append({"t": row["t"] - first["t"], **{k: row[k] for k in ("produced", *groups)}})
                dead = [s for s in (run.producer, *run.consumers) if not s.alive()]
                if dead:
                    verdict = f"{dead[0].name} exited with {dead[0].returncode}"
                    break
                late = [name for name in groups if self._not_catching_up(samples, name, rate)]
                if late:
                    verdict = "fell behind: " + ", ".join(
                        f"{name} {(row['produced'] - row[name]) / rate:.0f} s of input behind" for name in late
                    )
                    break
            last = samples[-1] if samples else {**first, "t": 0.0}
            after = self._cpu(run, broker) | {"bytes": self._bytes(run)}
        seconds = max(last["t"], 1e-9)
        stored = last["consumer_db"] - first["consumer_db"]
        return {
            "verdict": verdict,
            "held_s": round(seconds, 1),
            "produced_per_s": (last["produced"] - first["produced"]) / seconds,
            "stored_per_s": stored / seconds,
            "lag_s": {name: [round((s["produced"] - s[name]) / rate, 1) for s in samples] for name in groups},
            "lag_t": [round(s["t"], 1) for s in samples],
            "cpu_percent": {
                name: round(100 * (after[name] - before[name]) / TICK_S / seconds, 1)
                for name in before
                if name != "bytes" and name in after
            },
            "bytes_per_reading": (after["bytes"] - before["bytes"]) / stored if stored else None,
            "load": (min(loads), sum(loads) / len(loads), max(loads)) if loads else None,
        }

    def _not_catching_up(self, samples: list[dict], name: str, rate: float) -> bool:
        """More than --max-lag-s of input behind, and no less than a minute before: a stage slow to start
        (1,000 new robots' axes seeded, their state made) catches up; one that cannot keep up does not."""
        lag_s = [(s["t"], (s["produced"] - s[name]) / rate) for s in samples]
        earlier = [lag for t, lag in lag_s if t <= lag_s[-1][0] - CATCH_UP_S]
        return lag_s[-1][1] > self.args.max_lag_s and bool(earlier) and lag_s[-1][1] >= earlier[-1]

    @staticmethod
    def _bytes(run: Run) -> int:
        with run.engine.connect() as conn:
            return int(conn.execute(text(TABLES_BYTES)).scalar())

    @staticmethod
    def _cpu(run: Run, broker: int | None) -> dict[str, int]:
        """Ticks of each service, of the whole PostgreSQL server (every process pg_stat_activity lists, but
        this benchmark's own connections), of the broker and of this process (the observer)."""
        ticks = {s.name: cpu_ticks(s.proc.pid) for s in (run.producer, *run.consumers)}
        with run.engine.connect() as conn:
            pids = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND pid <> :listener"),
                {"listener": run.watch.listener_pid or 0},
            ).scalars()
            ticks["postgresql"] = sum(t for t in map(cpu_ticks, pids) if t is not None)
        ticks["kafka"] = cpu_ticks(broker) if broker else None
        ticks["observer"] = cpu_ticks(os.getpid())
        return {name: t for name, t in ticks.items() if t is not None}


def floor_trend(times: list[float], lags: list[float], window_s: float) -> tuple[float | None, float | None]:
    """(the least lag of the last ``window_s``, the least-squares slope of each window's least lag): a
    group that commits every 30 s (consumer_alerts with its snapshot) has a saw-tooth lag, and its floor
    is how far behind it really is; a floor that rises is a stage that does not keep up."""
    floors: dict[int, tuple[float, float]] = {}
    for t, lag in zip(times, lags, strict=True):
        window = int(t // window_s)
        floors[window] = min(floors.get(window, (t, lag)), (t, lag), key=lambda x: x[1])
    points = list(floors.values())
    end = min((lag for t, lag in zip(times, lags, strict=True) if t >= times[-1] - window_s), default=None)
    if len(points) < 3:
        return end, None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return end, sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else None


def level_row(robots: int, result: dict, sessions: int, *, spread: bool = False) -> dict:
    held = result["held"]
    found = latencies(result, sessions, spread=spread)
    row = {
        "robots": robots,
        "aim readings/s": robots / READING_INTERVAL_S,
        "produced/s": round(held["produced_per_s"], 1),
        "stored/s": round(held["stored_per_s"], 1),
        "held s": held["held_s"],
        "verdict": held["verdict"],
    }
    for label, stage in (("stored", "a"), ("alert", "b"), ("dashboard", "c")):
        row[f"{label} p50/p99 ms"] = f"{_ms(found[stage]['p50 ms'])} / {_ms(found[stage]['p99 ms'])}"
    row["alert events"] = found["b"]["samples"]
    if no_events(found):
        row["alert p50/p99 ms"] = "NO EVENTS: not measured"
    row["stored / dashboard seen of expected"] = " / ".join(
        f"{found[stage]['samples']}/{found[stage]['expected']}" for stage in ("a", "c")
    )
    growing = []
    for name, lags in held["lag_s"].items():
        end, slope = floor_trend(held["lag_t"], lags, LAG_WINDOW_S) if lags else (None, None)
        if end is not None and slope is not None and end > GROWING_FLOOR_S and slope > GROWING_SLOPE:
            growing.append(f"{name} lag growing ({slope:+.2f} s per s, {end:g} s at the end)")
        row[f"{name} lag s, max / end (slope)"] = (
            f"{max(lags, default=0):g} / {'' if end is None else f'{end:g}'} "
            f"({'' if slope is None else f'{slope:+.3f}'})"
        )
    if growing and row["verdict"] == "kept up":
        row["verdict"] = "fell behind: " + ", ".join(growing)
    row |= {f"CPU % {name}": value for name, value in held["cpu_percent"].items()}
    per_reading = held["bytes_per_reading"]
    row["bytes/reading"] = round(per_reading) if per_reading else None
    row["GB/day"] = round(per_reading * robots * READINGS_PER_ROBOT_DAY / 1e9, 1) if per_reading else None
    low, mean, high = held["load"] or (None, None, None)
    row["load 1-min min/mean/max"] = f"{low:.1f} / {mean:.1f} / {high:.1f}" if held["load"] else ""
    return row


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", default="100,500,1000,2000", help="the levels, comma-separated fleet sizes")
    parser.add_argument("--hold-s", type=float, default=600, help="measured seconds per level, after the warm-up")
    add_run_arguments(parser)  # at each level's start, --warmup seconds are left out
    parser.add_argument("--sample-s", type=float, default=5, help="seconds between two readings of the lag")
    parser.add_argument(
        "--max-lag-s",
        type=float,
        default=60,
        help="a group this many seconds of input behind, and no less than a minute before, has fallen "
        "behind: the level ends "
        "(consumer_alerts commits with its snapshot, every 30 s, so its lag is up to 30 s when it keeps up)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (their folder is printed)")
    parser.add_argument("--name", default="load_curve", help="the results' file name in bench/results/")
    args = parser.parse_args(argv)
    args.env = dict(item.split("=", 1) for item in args.env)
    levels = [int(r) for r in args.robots.split(",")]
    rows, details = [], {}
    for robots in levels:
        level = argparse.Namespace(
            robots=robots,
            seconds=args.hold_s,
            history_s=args.history_s,
            warmup=args.warmup,
            drain=args.drain,
            sessions=args.sessions,
            fault_period=args.fault_period,
            env=args.env,
            nice={},
            profile=args.profile,
            spread=args.spread,
            alerts_instances=args.alerts_instances,
        )
        print(f"--- {robots} robots, {args.hold_s:g} s held", flush=True)
        try:
            found = with_services("load_curve", partial(measure, hold=Held(args)), level, keep_logs=args.keep_logs)
        except Exception as error:  # a level that failed is a result too; the next level still runs
            rows.append({"robots": robots, "verdict": f"failed: {type(error).__name__}: {error}"[:300]})
            write(args, rows, details, None)
            continue
        if found is None:
            return 2
        result, extensions = found
        rows.append(level_row(robots, result, args.sessions, spread=args.spread))
        details[robots] = {"held": result["held"], "cpu_s_whole_run": result["cpu_s"]}
        write(args, rows, details, extensions)
    return 0


def write(args: argparse.Namespace, rows: list[dict], details: dict, extensions: dict | None) -> None:
    settings = (
        (" --spread" if args.spread else "")
        + (f" --alerts-instances {args.alerts_instances}" if args.alerts_instances != 1 else "")
        + "".join(f" --set {k}={v}" for k, v in args.env.items())
    )
    notes = (
        f"Command: `.venv/bin/python -m bench.load_curve --robots {args.robots} --hold-s {args.hold_s:g} "
        f"--history-s {args.history_s:g} --warmup {args.warmup:g} --sessions {args.sessions} "
        f"--fault-period {args.fault_period:g} "
        f"--max-lag-s {args.max_lag_s:g}{settings}`. Each level: a fresh database and topics (6 partitions), "
        "the services "
        f"as bench.pipeline_latency starts them ({args.alerts_instances} consumer_alerts instance(s) in one group, "
        "one instance of each other, each consumer_alerts' health state to a file), faults on, after the fleet's clean "
        "history of --history-s judged at full speed (a warm fleet). "
        "CPU %: of one core, over the held time, from /proc (postgresql: every server "
        "process but this benchmark's own connections; observer: this process, which reads every commit "
        "notification, the alert events and the dashboard sessions' messages; the readings' CreateTimes are "
        "read back after the level). GB/day: the tables and their indexes grown per reading stored, times "
        "the fleet's 43,200 readings per robot and day. Lag: high watermark minus committed offset, in "
        "seconds of input: the most during the hold / the least in its last 40 s (consumer_alerts commits every "
        "30 s, so its lag is a saw-tooth), and the slope of the 40-s windows' least lag (s per s: > 0 means "
        "growing)."
        + (f" aiokafka {extensions['aiokafka']}, C extensions: **{extensions['c_extensions']}**." if extensions else "")
    )
    write_results(args.name, rows, notes=notes, extra={"levels": details})


if __name__ == "__main__":
    sys.exit(main())
