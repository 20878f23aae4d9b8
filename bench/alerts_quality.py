"""Quality of consumer_alerts' detectors on the real export (a benchmark, not a timed test).

Train on the first 60 % of ../shared/data/RMBR4-2_export_test.csv, run over the remaining 40 %:

- clean: events per hour of data (target: at most 1);
- with faults injected by ``producer.faults`` (one of each kind per seed, on the working axes, inside
  working periods): each fault caught on its axis with its expected severity, no event for a dropout,
  the detection delay (fault start -> first event at the expected severity);
- side by side: the lab's straight-line model, the z-score alone (no model) and the original
  placeholder (rolling z over the last 50 rows including the current one, |z| > 3, one alert per row);
- per-reading processing cost in microseconds.

    .venv/bin/python -m bench.alerts_quality [--seeds 30] [--first-seed 1] [--csv FILE] [--fraction 0.6]
    .venv/bin/python -m bench.alerts_quality --broad report|holdout|tuning [--broad-seeds 11-40]   # by fault size
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench import _alerts_broad as broad_faults_bench
from bench._alerts_grading import effect, grade, placeholder_alerts, run_engine
from bench.results import write_results
from common.csvio.controller_csv import CsvOptions
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.sources import export_readings
from consumer_alerts.training import TrainingOptions, train
from producer.broad_faults import HOLDOUT_SEEDS, REPORT_SEEDS, TUNING_SEEDS, profiles, survey
from producer.faults import busy_periods, default_faults, inject_faults, labels_for

REAL_EXPORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "RMBR4-2_export_test.csv"
ROBOT, WORKING_AXES = "RMBR4-2", list(range(1, 9))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=REAL_EXPORT, help="the controller export (default: the real one)")
    parser.add_argument("--fraction", type=float, default=0.6, help="share of rows to train on (default 0.6)")
    parser.add_argument("--seeds", type=int, default=30, help="fault sets to inject, one of each kind per seed")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=1,
        help="seed of the first fault set (default 1; e.g. 31 for seeds the settings were not chosen on)",
    )
    parser.add_argument(
        "--grace-s", type=float, default=600.0, help="an event opened this long after a fault ended still counts"
    )
    parser.add_argument(
        "--broad",
        choices=("report", "holdout", "tuning"),
        help="instead: faults from producer.broad_faults, graded by size, on its report, held-out or tuning seeds "
        "(producer.broad_faults.REPORT_SEEDS / HOLDOUT_SEEDS / TUNING_SEEDS)",
    )
    parser.add_argument(
        "--broad-seeds",
        metavar="FIRST-LAST",
        type=seed_range,
        help="with --broad: these seeds instead of the set's (e.g. 11-40, the extra tuning seeds)",
    )
    args = parser.parse_args(argv)
    if args.broad_seeds and not args.broad:
        parser.error("--broad-seeds needs --broad (it chooses the seeds of a --broad run)")
    readings = list(export_readings(args.csv, CsvOptions(ROBOT, list(range(1, 15)))))
    cut = int(len(readings) * args.fraction)
    train_rows, test = readings[:cut], readings[cut:]
    hours = (test[-1].ts - test[0].ts).total_seconds() / 3600
    models = {
        kind: train(train_rows, TrainingOptions(kind=kind), robot_id=ROBOT, source=args.csv.name)
        for kind in ("density", "line")
    }
    if args.broad:
        return broad(args, train_rows, test, hours, models["density"])
    default = " + ".join(EngineConfig().detectors)  # named by what runs: the default set, with each model
    configs = {
        f"{default} (density model)": (EngineConfig(), models["density"]),
        f"{default} (lab line model)": (EngineConfig(), models["line"]),
        "zscore + stuck (no model)": (EngineConfig(detectors=("zscore", "stuck")), None),
    }
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    fault_sets = list(_fault_sets(test, seeds))
    rows, per_fault = [], {}
    for name, (config, model) in configs.items():
        row, faults = evaluate(name, config, model, test, hours, fault_sets, args.grace_s)
        rows.append(row)
        per_fault[name] = faults
    # The generator scales values off the sensor's digital grid; a real overload would stay on it. The same
    # faults snapped back to each axis's step show whether the density model leans on that artefact.
    steps = _steps(train_rows)
    on_grid = [
        (seed, [_snap(r, steps) for r in faulty], labels, changed) for seed, faulty, labels, changed in fault_sets
    ]
    name = f"{default} (density model), faults snapped to the sensor step"
    row, per_fault[name] = evaluate(name, EngineConfig(), models["density"], test, hours, on_grid, args.grace_s)
    rows.append(row)
    placeholder = placeholder_alerts(test, WORKING_AXES)
    rows.append(
        {
            "detectors": "placeholder: rolling z (50 rows incl. current), |z|>3",
            "clean_events": placeholder,
            "clean_events_per_h": round(placeholder / hours, 1),
        }
    )
    notes = _notes(args, seeds, len(train_rows), len(test), hours, models, per_fault)
    name = "alerts_quality" if seeds[0] == 1 else f"alerts_quality_seeds{seeds[0]}-{seeds[-1]}"
    write_results(
        name,
        rows,
        notes=notes,
        extra={
            "faults": per_fault,
            "models": {
                k: {
                    a: {
                        "r2": m.line.r2,
                        "min_c": m.min_c,
                        "max_c": m.max_c,
                        "t_long_s": m.t_long_s,
                        "t_short_s": m.t_short_s,
                    }
                    for a, m in model.axes.items()
                }
                for k, model in models.items()
            },
        },
    )
    return 0


def seed_range(text: str) -> range:
    """``--broad-seeds``: FIRST-LAST, both included, e.g. 11-40."""
    first, dash, last = text.partition("-")
    if not (dash and first.isdigit() and last.isdigit() and int(first) <= int(last)):
        raise argparse.ArgumentTypeError(f"{text!r} is not FIRST-LAST with FIRST <= LAST, e.g. 11-40")
    return range(int(first), int(last) + 1)


def broad(args, train_rows, test, hours, model) -> int:
    """The broader generator's faults over the evaluated part, graded by size (bench._alerts_broad)."""
    seeds = {"report": REPORT_SEEDS, "holdout": HOLDOUT_SEEDS, "tuning": TUNING_SEEDS}[args.broad]
    if args.broad_seeds:
        seeds = args.broad_seeds
    profile = profiles(train_rows)  # sizes relative to each axis's normal level in the training part
    config = EngineConfig()
    recording = survey(test, busy_periods(test), stoppage_s=config.stoppage_s)
    no_model = EngineConfig(detectors=tuple(d for d in config.detectors if d != "residual"))
    configs = {
        "default: " + " + ".join(config.detectors): broad_faults_bench.engine_events(config, model),
        "no model: " + " + ".join(no_model.detectors): broad_faults_bench.engine_events(no_model, None),
        "default without multivariate": broad_faults_bench.engine_events(
            replace(config, detectors=tuple(d for d in config.detectors if d != "multivariate")), model
        ),
    }
    rows, per_config = [], {}
    for name, detect in configs.items():
        clean = detect(test)
        result = broad_faults_bench.evaluate_broad(
            detect, test, recording, profile, WORKING_AXES, seeds, grace_s=args.grace_s, robot_id=ROBOT
        )
        per_config[name] = result
        rows.append(broad_faults_bench.headline(name, result, len(clean), hours))
        print(f"{name}: {rows[-1]}", flush=True)
    notes = "\n".join(
        f"- {line}"
        for line in (
            f"Data: {args.csv.name}, first {args.fraction:.0%} for the model and the axes' normal levels, "
            f"{len(test)} rows ({hours:.1f} h) evaluated.",
            f"Seeds: {args.broad} set, {seeds.start}..{seeds.stop - 1} (tuning seeds "
            f"{TUNING_SEEDS.start}..{TUNING_SEEDS.stop - 1}, "
            f"report seeds {REPORT_SEEDS.start}..{REPORT_SEEDS.stop - 1}, "
            f"held-out seeds {HOLDOUT_SEEDS.start}..{HOLDOUT_SEEDS.stop - 1}).",
            f"Caught: an event on one of the fault's axes opened between its start and its end + {args.grace_s:.0f} s; "
            "right severity: the highest of those events is the expected one (ERROR for a gross change).",
            "Faults whose window changed no reading are left out. clean_events_per_h: on the clean evaluated part; "
            "stray_events_per_h: events in the faulty runs that match no fault; program_change_events_per_h: events "
            "after a program change (not a fault), per hour after it.",
        )
    )
    notes += "\n\n" + broad_faults_bench.report_markdown(per_config)
    name = f"alerts_quality_broad_{args.broad}" + (f"_seeds{seeds.start}-{seeds.stop - 1}" if args.broad_seeds else "")
    write_results(name, rows, notes=notes, extra={"faults": per_config})
    return 0


def _fault_sets(test, seeds: range):
    busy = busy_periods(test)
    span = (test[-1].ts - test[0].ts).total_seconds()
    for seed in seeds:
        specs = default_faults(test[0].ts, span, WORKING_AXES, seed, busy=busy, robot_id=ROBOT)
        faulty = list(inject_faults(test, specs))
        labels = labels_for(specs)
        changed = {(lab.kind.value, lab.axis): effect(test, faulty, lab.axis, lab.start, lab.end) for lab in labels}
        yield seed, faulty, labels, changed


def _steps(readings) -> dict[int, float]:
    """Each axis's digital step: its smallest non-zero reading (the export's currents sit on a grid)."""
    steps: dict[int, float] = {}
    for r in readings:
        for axis, v in r.currents.items():
            if v:
                steps[axis] = min(steps.get(axis, v), v)
    return steps


def _snap(reading, steps):
    currents = {a: (round(v / steps[a]) * steps[a] if v and a in steps else v) for a, v in reading.currents.items()}
    return reading.model_copy(update={"currents": currents})


def cost_us(config, model, test, repeats: int = 3) -> float:
    """CPU microseconds per reading through the engine, best of ``repeats`` (CPU time, so that other
    work on the machine does not count)."""
    best = float("inf")
    for _ in range(repeats):
        engine = DetectorEngine(config, model)
        started = time.process_time()
        for reading in test:
            engine.process(reading)
        best = min(best, time.process_time() - started)
    return best / len(test) * 1e6


def evaluate(name, config, model, test, hours, fault_sets, grace_s):
    clean = run_engine(test, DetectorEngine(config, model))
    cost = cost_us(config, model, test)
    faults, stray = [], 0
    for seed, faulty, labels, changed in fault_sets:
        graded, unmatched = grade(
            run_engine(faulty, DetectorEngine(config, model)), labels, grace_s=grace_s, changed=changed
        )
        faults += [{"seed": seed, **g} for g in graded]
        stray += unmatched
    effective = [f for f in faults if f["changed_readings"] > 0]
    delays = {
        k: [f["delay_s"] for f in effective if f["kind"] == k and f["ok"] and f["delay_s"] is not None]
        for k in ("overload", "spike", "drift", "stuck")
    }
    row = {
        "detectors": name,
        "clean_events": len(clean),
        "clean_events_per_h": round(len(clean) / hours, 2),
        "faults_ok": f"{sum(f['ok'] for f in effective)}/{len(effective)}",
        **{
            f"{k}_ok": f"{sum(f['ok'] for f in effective if f['kind'] == k)}/{sum(f['kind'] == k for f in effective)}"
            for k in ("overload", "spike", "drift", "stuck", "dropout")
        },
        "stray_events_per_h": round(stray / (hours * len(fault_sets)), 2),
        **{f"{k}_delay_s_median": (round(statistics.median(v)) if v else None) for k, v in delays.items()},
        "us_per_reading": round(cost, 1),
    }
    print(
        f"{name}: clean {len(clean)} events; faults {row['faults_ok']}; wrong: "
        f"{Counter((f['kind'], f['got']) for f in effective if not f['ok'])}",
        flush=True,
    )
    return row, faults


def _delays(faults) -> str:
    parts = []
    for kind in ("overload", "spike", "drift", "stuck"):
        d = sorted(f["delay_s"] for f in faults if f["kind"] == kind and f["ok"] and f["delay_s"] is not None)
        if d:
            parts.append(f"{kind} {d[0]:g} / {statistics.median(d):g} / {d[-1]:g} s")
    return "Detection delay of the first configuration (min / median / max): " + "; ".join(parts)


def _notes(args, seeds: range, n_train, n_test, hours, models, per_fault) -> str:
    no_effect = sum(1 for f in next(iter(per_fault.values())) if f["changed_readings"] == 0)
    lines = [
        f"Data: {args.csv.name}, {n_train} rows trained on, {n_test} rows ({hours:.1f} h) evaluated; "
        f"{len(seeds)} fault sets (seeds {seeds[0]}..{seeds[-1]}), one fault of each kind per set on axes 1-8.",
        "Faults whose window changed no reading (e.g. a spike over an idle gap) are left out of the counts: "
        f"{no_effect}.",
        "A fault is caught when an event on its axis opens between its start and its end + "
        f"{args.grace_s:.0f} s and the highest severity of those events is the expected one (dropout: no event).",
        "stray_events_per_h: events in the faulty runs that match no fault (wrong axis or outside every window).",
        "placeholder: one alert per row and axis with |z| > 3, the way the original notebook raised them.",
        "us_per_reading: CPU time per reading through the whole engine (14 axes, every detector, the lifecycles), "
        "best of 3.",
        _delays(next(iter(per_fault.values()))),
        "Line model R^2 per axis: " + ", ".join(f"{a}: {m.line.r2:.3f}" for a, m in models["line"].axes.items()),
    ]
    return "\n".join(f"- {line}" for line in lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
