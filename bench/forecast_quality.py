"""Quality of the maintenance forecast on synthetic wear (issue 22; a benchmark, not a timed test).

For each seed, a fleet of ``--robots`` synthetic robots runs ``--days`` days (``producer.wear``: stoppages and
program changes on every robot, wear on ``--axes-per-robot`` axes of ``--worn`` of them; a worn robot only until
a day after its last crossing) through the health pipeline: work cycles and
indicators (``consumer_alerts.health.cycles``), deviation from the learned normal (``.baseline``), hourly
medians less the robot's common mode and the local linear trend (``.forecast``; the naive line below runs on
the raw hourly medians). Then:

- for each worn axis, when 50 %, 25 % and 10 % of its life (crossing - onset) is left: the absolute error of
  the forecast time to crossing (hours) and whether the true crossing lies in the 80 % interval; the same for
  the naive baseline, a least-squares line through the last day of hourly values; and the "level error": the
  measured level's offset from the true wear over the last day in hours of the remaining growth, the error
  even a perfect trend would make on this measurement;
- for calibrating the interval, the same forecast at every 2.5 % of each worn axis's life from 60 % to 5 % left
  (23 per axis), coverage and error in three bands and pooled: ``interval_scale`` was chosen on these (tuning
  seeds). Each coverage, and each ratio of the model's error to the naive line's, comes with a 90 % interval
  that resamples whole worn robots (their forecasts share a series, so they are not independent cases): a
  ratio of medians moves a lot between seed sets (docs/benchmarks.md, round 9);
- for each robot without wear, at the end of every day from day 3: is any of its axes forecast to cross
  within ``--due-days``?
- the ``maintenance_due`` events the stream's own rule (``AxisHealth.take_hour``: ``HEALTH_MIN_HOURS``, the
  lifecycle) opens over the whole run: on robots without wear (false alarms), and on worn axes, how many
  days before the true crossing.

Seeds 1-4 with the linear and exponential shapes were used to tune the trend's settings ("tuning":
``--tuning --robots 10 --worn 6``); the reported seeds (default 101-104) also run the three shapes never looked
at while tuning ("held out").
The hourly series are cached under ``--cache`` (keyed by seed, fleet and days), so re-running with other
trend settings takes seconds; so are the work cycles they are made from, so a change of the baseline
(``SERIES_VERSION``) makes the series again in a few seconds a robot instead of minutes.

    .venv/bin/python -m bench.forecast_quality [--seeds 101,102,103,104] [--tuning] [--robots 20] [--worn 8]
        [--axes-per-robot 3] [--days 30] [--due-days 7] [--jobs 2] [--set level_noise=0.002 ...]
        [--fleet all|worn|clean]
"""

from __future__ import annotations

import argparse
import itertools
import math
import pickle
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.results import write_results
from consumer_alerts.health.baseline import AxisBaseline
from consumer_alerts.health.cycles import Cycle, CycleSplitter
from consumer_alerts.health.forecast import (
    HOUR_S,
    MAX_HORIZON_H,
    Forecast,
    HourlyMedian,
    HourValue,
    WearTrend,
    relative_series,
)
from consumer_alerts.health.monitor import AxisHealth, HealthConfig
from producer.synthetic import SyntheticRobot, robot_ids
from producer.wear import DAY_S, DEFAULT_LIMIT, HELD_OUT_SHAPES, SHAPES, TUNING_SHAPES, RobotWear, WearSpec, wear_plan
from producer.wear_offline import offline_cycles

TUNING_SEEDS = (1, 2, 3, 4)
REPORT_SEEDS = (101, 102, 103, 104)
LEFT = (0.5, 0.25, 0.1)
DENSE_STEP = 0.025  # of the life: the calibration's forecasts, 23 per worn axis
DENSE_BANDS = (
    ("60-40 %", 0.4, 0.6 + 1e-9),
    ("40-17.5 %", 0.175, 0.4),
    ("17.5-5 %", 0.05 - 1e-9, 0.175),
    ("60-5 %", 0.05 - 1e-9, 0.6 + 1e-9),  # all of them: what interval_scale is calibrated on
)
WORKING_AXES = tuple(range(1, 8))
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "forecast_quality"
SERIES_VERSION = 4  # part of the cache key: bump when the hourly series change (baseline, medians)
CYCLES_VERSION = 1  # the cached work cycles' key: bump when they change (synthetic robot, wear, splitter)
AFTER_CROSSING_DAYS = 1.0  # a worn robot runs this long after its crossing: nothing is graded later
BOOTSTRAP = 2000  # resamples of the worn axes for the coverage's 90 % interval


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", help="comma-separated seeds (default: the reported ones, or the tuning ones)")
    p.add_argument("--tuning", action="store_true", help="the tuning seeds and shapes only")
    p.add_argument("--robots", type=int, default=20)
    p.add_argument("--worn", type=int, default=8)
    p.add_argument("--axes-per-robot", type=int, default=3, help="worn axes of each worn robot")
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--due-days", type=float, default=7.0, help="maintenance-due horizon")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a WearTrend setting")
    p.add_argument(
        "--fleet", choices=("all", "worn", "clean"), default="all", help="only the robots with (without) wear"
    )
    args = p.parse_args(argv)
    seeds = (
        [int(s) for s in args.seeds.split(",")] if args.seeds else list(TUNING_SEEDS if args.tuning else REPORT_SEEDS)
    )
    shapes = TUNING_SHAPES if args.tuning else SHAPES
    trend = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    started = time.perf_counter()
    args.cache.mkdir(parents=True, exist_ok=True)
    jobs = [
        (seed, rid, args.robots, args.worn, args.axes_per_robot, args.days, shapes, args.cache)
        for seed in seeds
        for rid in _fleet(seed, args, shapes)
    ]
    fleets = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for done, ((seed, *_), result) in enumerate(zip(jobs, pool.map(_robot_series, jobs), strict=True), 1):
            fleets.append((seed, *result))
            print(f"\r{done}/{len(jobs)} robots' series ({time.perf_counter() - started:.0f} s)", end="", flush=True)
    print()
    made = time.perf_counter() - started
    worn_rows, clean = [], {"model": [0, 0], "naive": [0, 0]}
    config = HealthConfig(due_days=args.due_days)
    alerts = {"clean robots": 0, "clean robots alerted": 0, "clean due events": 0, "worn axes": 0}
    leads, other_axes, dense = [], 0, []
    for seed, specs, series in fleets:
        relative = relative_series(series)  # what the stream's trends take (HealthMonitor); the naive line: raw
        opened = due_events(relative, trend, config)
        for spec in specs:
            graded = _grade_worn(spec, series[spec.axis], relative[spec.axis], trend)
            worn_rows += [{"seed": seed, **row} for row in graded]
            dense += [{"seed": seed, "robot": spec.robot_id, **row} for row in _dense(spec, relative[spec.axis], trend)]
            alerts["worn axes"] += 1
            mine = [h for axis, h in opened if axis == spec.axis]
            if mine:
                leads.append((spec.crossing_s / HOUR_S - mine[0]) / 24)
        if specs:
            other_axes += sum(axis not in {s.axis for s in specs} for axis, _ in opened)
        else:
            for method, (due, days) in _grade_clean(series, relative, args.days, args.due_days * 24, trend).items():
                clean[method][0] += due
                clean[method][1] += days
            alerts["clean robots"] += 1
            alerts["clean robots alerted"] += bool(opened)
            alerts["clean due events"] += len(opened)
    rows = _summary(worn_rows, clean, args.due_days) + _dense_summary(dense)
    rows += _due_summary(alerts, leads, other_axes, args)
    cost = _stream_cost()
    notes = (
        f"seeds {seeds} ({'tuning' if args.tuning else 'reported'}), {args.robots} robots x {args.days:g} days "
        f"({'every robot' if args.fleet == 'all' else f'only those {args.fleet}'}), "
        f"{args.worn} worn per seed with {args.axes_per_robot} worn axes each (each robot run until "
        f"{AFTER_CROSSING_DAYS:g} d after its last crossing), "
        f"shapes {', '.join(shapes)} (held out from tuning: "
        f"{', '.join(s for s in shapes if s in HELD_OUT_SHAPES) or 'none'}); trend settings {trend or 'defaults'}; "
        f"series made in {made:.0f} s (cached in {args.cache}). Stream cost on one synthetic robot-day (43,200 "
        f"readings, 14 axes, best of 3): {cost['split_us_per_reading']:.1f} µs per reading to split and compute "
        f"the indicators, {cost['baseline_ms_per_cycle']:.2f} ms per cycle for program match and deviations "
        f"({cost['total_us_per_reading']:.1f} µs per reading in all)."
    )
    name = "forecast_quality" + ("_tuning" if args.tuning else "") + ("" if args.fleet == "all" else f"_{args.fleet}")
    write_results(name, rows, notes=notes, extra={"forecasts": worn_rows})
    return 0


def _fleet(seed: int, args, shapes) -> list[str]:
    """The robot ids to run: all, or only those with (``worn``) or without (``clean``) wear in the seed's plan."""
    ids = robot_ids(args.robots)
    if args.fleet == "all":
        return ids
    plan = wear_plan(
        ids, seed=seed, worn=args.worn, axes=WORKING_AXES, shapes=shapes, axes_per_robot=args.axes_per_robot
    )
    return [rid for rid in ids if bool(plan.robots[rid].specs) == (args.fleet == "worn")]


def _stream_cost() -> dict[str, float]:
    """CPU cost of the streaming path on the live feed's readings (what consumer_alerts would add)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    robot = SyntheticRobot("robot-001", seed=1, tick_seconds=2.0, start=start, axes=range(1, 15))
    rows = [((r.ts - start).total_seconds(), r.currents) for r in itertools.islice(robot, 43200)]
    split = base = math.inf
    for _ in range(3):
        splitter, baseline = CycleSplitter("robot-001"), AxisBaseline()
        t = time.process_time()  # CPU time: the machine may be shared
        cycles = [c for ts, currents in rows for c in splitter.push(ts, currents)]
        t1 = time.process_time()
        for c in cycles:
            baseline.deviations(c)
        split, base = min(split, t1 - t), min(base, time.process_time() - t1)
    return {
        "split_us_per_reading": split * 1e6 / len(rows),
        "baseline_ms_per_cycle": base * 1e3 / len(cycles),
        "total_us_per_reading": (split + base) * 1e6 / len(rows),
    }


def _robot_series(job) -> tuple[list[WearSpec], dict[int, list[HourValue]]]:
    """One robot's hourly deviation series per axis, and its wear specs (none without wear); cached."""
    seed, rid, robots, worn, per_robot, days, shapes, cache = job
    plan = wear_plan(
        robot_ids(robots), seed=seed, worn=worn, axes=WORKING_AXES, shapes=shapes, axes_per_robot=per_robot
    )
    wear = plan.robots[rid]
    fleet = f"{seed}-{robots}-{worn}x{per_robot}-{days:g}-{'_'.join(shapes)}-{rid}"
    path = cache / f"v{SERIES_VERSION}-{fleet}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    if wear.specs:  # a third of the CPU saved: after its crossing a worn axis is graded no more
        days = min(days, max(s.crossing_s for s in wear.specs) / DAY_S + AFTER_CROSSING_DAYS)
    baseline = AxisBaseline()
    hourly: dict[int, HourlyMedian] = {}
    series: dict[int, list[HourValue]] = {}
    for cycle in _robot_cycles(seed, rid, days, wear, cache / f"cycles-v{CYCLES_VERSION}-{fleet}.pkl"):
        deviations = baseline.deviations(cycle)
        for axis in deviations.keys() | baseline.carried_over:
            change = axis in baseline.carried_over
            done = hourly.setdefault(axis, HourlyMedian()).push(
                cycle.start, deviations.get(axis), program_change=change
            )
            if done is not None:
                series.setdefault(axis, []).append(done)
    for axis, agg in hourly.items():
        if (done := agg.flush()) is not None:
            series.setdefault(axis, []).append(done)
    result = (wear.specs, series)
    path.write_bytes(pickle.dumps(result))
    return result


def _robot_cycles(seed: int, rid: str, days: float, wear: RobotWear, path: Path) -> list[Cycle]:
    """The robot's work cycles as the splitter gives them (``CycleSplitter.whole_cycle``), cached in ``path``:
    making them is nearly all of a series' CPU, and a change of the baseline or the medians (a new
    ``SERIES_VERSION``) needs them again unchanged (~17 MB a robot-month)."""
    if path.exists():
        return pickle.loads(path.read_bytes())
    splitter = CycleSplitter(rid)
    cycles = [
        splitter.whole_cycle(c.times, c.currents, c.axes, c.end)
        for c in offline_cycles(rid, seed=seed, days=days, wear=wear)
    ]
    path.write_bytes(pickle.dumps(cycles, protocol=pickle.HIGHEST_PROTOCOL))
    return cycles


def _grade_worn(spec: WearSpec, raw: list[HourValue], relative: list[HourValue], trend: dict[str, float]) -> list[dict]:
    """The model on the values less the robot's common mode (as the stream), the naive line on the raw hourly
    values (the indicator as stored); both lists have the same hours."""
    onset, crossing = spec.onset_s / HOUR_S, spec.crossing_s / HOUR_S
    at = {left: crossing - left * (crossing - onset) for left in LEFT}
    model, rows, pending = WearTrend(**trend), [], sorted(at.items(), key=lambda kv: kv[1])
    for i, obs in enumerate(relative):
        while pending and obs.hour > pending[0][1]:
            left, now = pending.pop(0)
            rows.append(_graded(spec, "model", left, now, crossing, model.forecast(spec.limit, now)))
            rows[-1]["level_error_h"] = _level_error_h(spec, relative[:i], now)
            rows.append(_graded(spec, "naive", left, now, crossing, naive_forecast(raw[:i], spec.limit, now)))
        model.update(obs)
    return rows


def _dense(spec: WearSpec, series: list[HourValue], trend: dict[str, float]) -> list[dict]:
    """The forecast at every DENSE_STEP of the axis's life from 60 % to 5 % left: many more cases than the three
    moments above (though of the same few axes), for calibrating the interval (``interval_scale``)."""
    onset, crossing = spec.onset_s / HOUR_S, spec.crossing_s / HOUR_S
    checks = [crossing - f * (crossing - onset) for f in np.arange(0.6, 0.05 - 1e-9, -DENSE_STEP)]
    model, i, out = WearTrend(**trend), 0, []
    for now in checks:
        while i < len(series) and series[i].hour <= now:
            model.update(series[i])
            i += 1
        if (f := model.forecast(spec.limit, now)) is not None:
            predicted = min(max(f.crossing - now, 0.0), MAX_HORIZON_H)
            left = (crossing - now) / (crossing - onset)
            out.append(
                {"left": left, "abs_error_h": abs(predicted - (crossing - now)), "inside": f.low <= crossing <= f.high}
            )
    return out


def _dense_summary(dense: list[dict]) -> list[dict]:
    out = []
    for name, low, high in DENSE_BANDS:
        chosen = [d for d in dense if low <= d["left"] < high]
        if chosen:
            out.append(
                {
                    "shapes": f"every {DENSE_STEP:.1%} of life, {name} left",
                    "n": len(chosen),
                    "model MAE h (median)": statistics.median(d["abs_error_h"] for d in chosen),
                    "model in 80 %": sum(d["inside"] for d in chosen) / len(chosen),
                    "in 80 %, 90 % CI": coverage_interval(chosen, "inside"),
                }
            )
    return out


def coverage_interval(cases: list[dict], key: str, resamples: int = BOOTSTRAP) -> str:
    """A 90 % interval of the share of ``cases`` whose ``key`` is true, resampling whole worn axes (seed, robot):
    an axis's forecasts share its series, so they are not independent cases."""
    axes: dict[tuple, list[bool]] = {}
    for c in cases:
        axes.setdefault((c["seed"], c["robot"]), []).append(bool(c[key]))
    hits = np.array([sum(v) for v in axes.values()], dtype=float)
    counts = np.array([len(v) for v in axes.values()], dtype=float)
    picks = np.random.default_rng(0).integers(len(hits), size=(resamples, len(hits)))
    shares = hits[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.percentile(shares, [5, 95])
    return f"{low:.0%}-{high:.0%}"


def ratio_interval(model: list[dict], naive: list[dict], resamples: int = BOOTSTRAP) -> str:
    """A 90 % interval of the ratio of median absolute errors, model over naive, resampling whole worn robots
    (seed, robot) with both methods' forecasts of each: how far another fleet of the same make might put it.
    A ratio of medians of ~100 crossings moves a lot with a few cases near the median (docs/benchmarks.md)."""
    robots: dict[tuple, tuple[list[float], list[float]]] = {}
    for method, rows in ((0, model), (1, naive)):
        for r in rows:
            robots.setdefault((r["seed"], r["robot"]), ([], []))[method].append(r["abs_error_h"])
    groups = list(robots.values())
    picks = np.random.default_rng(0).integers(len(groups), size=(resamples, len(groups)))
    ratios = []
    for pick in picks:
        mine = [e for i in pick for e in groups[i][0]]
        theirs = [e for i in pick for e in groups[i][1]]
        ratios.append(statistics.median(mine) / max(statistics.median(theirs), 1e-9))
    low, high = np.percentile(ratios, [5, 95])
    return f"{low:.2f}-{high:.2f}"


def _level_error_h(spec: WearSpec, series: list[HourValue], now: float) -> float:
    """The error even a perfect trend would make: the measured level's offset from the true wear over the
    last day (the learned normals' own error), in hours of the remaining mean growth (at most the hours left)."""
    day = [o for o in series if o.hour > now - 24]
    left_h = spec.crossing_s / HOUR_S - now
    if not day or left_h <= 0:
        return 0.0
    offset = abs(statistics.median(o.value - spec.level(o.hour * HOUR_S) for o in day))
    growth_per_h = (spec.limit - spec.level(now * HOUR_S)) / left_h
    return min(offset / growth_per_h, left_h) if growth_per_h > 0 else left_h


def _graded(spec, method, left, now, crossing, forecast) -> dict:
    true_left = crossing - now
    if forecast is None:
        predicted, low, high = math.inf, math.inf, math.inf
    else:
        predicted, low, high = forecast.crossing - now, forecast.low, forecast.high
    predicted = min(max(predicted, 0.0), MAX_HORIZON_H)  # "never" counts as the horizon, not as infinity
    return {
        "robot": spec.robot_id,
        "axis": spec.axis,
        "shape": spec.shape,
        "method": method,
        "left": left,
        "true_hours_left": true_left,
        "forecast_hours_left": predicted,
        "abs_error_h": abs(predicted - true_left),
        "inside_80": low <= crossing <= high if method == "model" else None,  # the naive line has no interval
        "interval_h": [low - now, high - now] if method == "model" else None,
    }


def naive_forecast(series: list[HourValue], limit: float, now: float):
    """A least-squares line through the last day of hourly values before ``now`` (the last 24 hours with
    data: a stoppage does not leave it empty-handed), extended to the limit."""
    day = [o for o in series if o.hour <= now][-24:]
    if len(day) < 3:
        return None
    t, v = np.array([o.hour for o in day]), np.array([o.value for o in day])
    slope, intercept = np.polyfit(t - now, v, 1)
    crossing = now if intercept >= limit else (now + (limit - intercept) / slope if slope > 0 else math.inf)
    return Forecast(now, float(intercept), float(slope * 24), crossing, crossing, crossing)


def _grade_clean(
    series: dict[int, list[HourValue]],
    relative: dict[int, list[HourValue]],
    days: float,
    due_h: float,
    trend: dict[str, float],
) -> dict:
    """Days (from day 3) at whose end some axis of this robot without wear was forecast to cross within due_h
    (the model on the values less the robot's common mode, the naive line on the raw ones)."""
    models = {axis: WearTrend(**trend) for axis in series}
    checks = [d * 24.0 for d in range(3, int(days) + 1)]
    due = {"model": set(), "naive": set()}
    for axis, values in relative.items():
        i = 0
        for check in checks:
            while i < len(values) and values[i].hour <= check:
                models[axis].update(values[i])
                i += 1
            for method, f in (
                ("model", models[axis].forecast(DEFAULT_LIMIT, check)),
                ("naive", naive_forecast(series[axis][:i], DEFAULT_LIMIT, check)),
            ):
                if f is not None and f.crossing - check <= due_h:
                    due[method].add(check)
    return {method: (len(days_due), len(checks)) for method, days_due in due.items()}


def due_events(series: dict[int, list[HourValue]], trend: dict[str, float], config: HealthConfig) -> list[tuple]:
    """(axis, hour opened) of every maintenance_due event the stream's rule (``AxisHealth.take_hour``) opens
    over a robot's hourly series."""
    opened = []
    for axis, values in series.items():
        health = AxisHealth(trend=WearTrend(**trend))
        for obs in values:
            _, alert = health.take_hour("bench", axis, obs, config)
            if alert is not None and alert.state == "open" and alert.opened_at.timestamp() / HOUR_S == obs.hour:
                opened.append((axis, obs.hour))
    return sorted(opened, key=lambda item: item[1])


def _due_summary(alerts: dict, leads: list[float], other_axes: int, args) -> list[dict]:
    lead = f"{statistics.median(leads):.1f} d (range {min(leads):.1f}–{max(leads):.1f})" if leads else "none"
    return [
        {
            "shapes": f"no wear: robots with a maintenance_due event over {args.days:g} days",
            "n": alerts["clean robots"],
            "left": "",
            "true h left (median)": alerts["clean robots alerted"],
            "model MAE h (median)": f"{alerts['clean due events']} events",
        },
        {
            "shapes": f"wear: worn axes with maintenance_due before the crossing (due {args.due_days:g} d ahead)",
            "n": alerts["worn axes"],
            "left": "",
            "true h left (median)": sum(lead > 0 for lead in leads),  # an event after the crossing is late
            "model MAE h (median)": f"lead {lead}; {other_axes} event(s) on the worn robots' other axes",
        },
    ]


def _summary(rows: list[dict], clean: dict, due_days: float) -> list[dict]:
    out = []
    groups = [("all", None), ("tuning shapes", TUNING_SHAPES), ("held-out shapes", HELD_OUT_SHAPES)]
    for name, shapes in groups:
        for left in LEFT:
            row = {"shapes": name, "left": f"{left:.0%}"}
            chosen = {
                m: [
                    r
                    for r in rows
                    if r["method"] == m and r["left"] == left and (shapes is None or r["shape"] in shapes)
                ]
                for m in ("model", "naive")
            }
            if not chosen["model"]:
                continue
            row["n"] = len(chosen["model"])
            row["true h left (median)"] = statistics.median(r["true_hours_left"] for r in chosen["model"])
            for m, rs in chosen.items():
                row[f"{m} MAE h (median)"] = statistics.median(r["abs_error_h"] for r in rs)
            row["model in 80 %"] = sum(r["inside_80"] for r in chosen["model"]) / len(chosen["model"])
            row["in 80 %, 90 % CI"] = coverage_interval(chosen["model"], "inside_80")
            row["model / naive"] = row["model MAE h (median)"] / max(row["naive MAE h (median)"], 1e-9)
            row["model / naive, 90 % CI"] = ratio_interval(chosen["model"], chosen["naive"])
            row["level error h (median)"] = statistics.median(r["level_error_h"] for r in chosen["model"])
            out.append(row)
    for m, (due, checks) in clean.items():
        out.append(
            {
                "shapes": f"no wear: days with a crossing forecast within {due_days:g} d ({m})",
                "n": checks,
                "left": "",
                "true h left (median)": due,
            }
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
