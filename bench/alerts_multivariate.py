"""The cross-axis detector alone on the real export: quiet on clean data, what it sees, what it costs.

Streams the whole export through ``MultivariateDetector`` (score each row, then learn it) and reports:

- clean: the highest score before and after the 60 % mark, rows at or above 0.5 (the ALERT level);
- faults over a stretch of the last 40 % (rows 33,500-35,500 by default, about 1,000 of them active): the share
  of active rows at or above 0.5 for broken relations (two axes swapped, one axis's values shuffled in time, a
  light axis held at a level inside its range while moving) and for plain level changes of one axis;
- CPU microseconds per reading (best of 3).

    .venv/bin/python -m bench.alerts_multivariate [--csv FILE] [--start 33500] [--rows 2000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results import write_results
from consumer_alerts.detectors.multivariate import MultivariateDetector

REAL_EXPORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "RMBR4-2_export_test.csv"
AXES = [f"Axis #{i}" for i in range(1, 15)]


def stream(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Scores of every row (score, then learn) and the CPU seconds it took."""
    detector = MultivariateDetector()
    rows = [{i + 1: (None if np.isnan(v) else float(v)) for i, v in enumerate(row)} for row in values]
    scores = np.zeros(len(rows))
    started = time.process_time()
    for n, x in enumerate(rows):
        scores[n] = detector.score_one(x)
        detector.learn_one(x)
    return scores, time.process_time() - started


def faults(start: int, end: int) -> dict:
    """Name -> a function that changes a copy of the export's values in rows [start, end)."""
    rng = np.random.default_rng(0)

    def swap(v):
        v[start:end, [0, 2]] = v[start:end, [2, 0]]

    def shuffle(v):
        v[start:end, 2] = rng.permutation(v[start:end, 2])

    def hold(axis, amps):
        def change(v):
            moving = v[start:end, axis] != 0
            v[start:end, axis][moving] = amps

        return change

    def scale(axis, factor):
        def change(v):
            v[start:end, axis] *= factor

        return change

    return {
        "axes 1 and 3 swapped": swap,
        "axis 3's values shuffled in time": shuffle,
        "axis 8 held at 2 A while moving (its range 0-5.9 A)": hold(7, 2.0),
        "axis 2 at 1.3x": scale(1, 1.3),
        "axis 2 at 0.5x": scale(1, 0.5),
        "axis 2 held at 130 A while moving (13x)": hold(1, 130.0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=REAL_EXPORT, help="the controller export (default: the real one)")
    parser.add_argument("--start", type=int, default=33_500, help="first row of the faulty stretch")
    parser.add_argument("--rows", type=int, default=2_000, help="rows in the faulty stretch")
    args = parser.parse_args(argv)
    clean = pd.read_csv(args.csv)[AXES].to_numpy(dtype=float)
    cut, start, end = int(len(clean) * 0.6), args.start, args.start + args.rows
    cpu = []
    for _ in range(3):
        scores, seconds = stream(clean)
        cpu.append(seconds / len(clean) * 1e6)
    rows = [
        {
            "case": "clean",
            "max score, first 60 %": round(float(scores[:cut].max()), 3),
            "max score, last 40 %": round(float(scores[cut:].max()), 3),
            "rows >= 0.5": int((scores >= 0.5).sum()),
            "us per reading": round(min(cpu), 1),
        }
    ]
    active = (clean[start:end, :8] != 0).any(axis=1)
    for name, change in faults(start, end).items():
        values = clean.copy()
        change(values)
        inside = stream(values)[0][start:end][active]
        rows.append({"case": name, "active rows >= 0.5": f"{np.mean(inside >= 0.5):.0%}"})
        print(rows[-1], flush=True)
    notes = (
        f"- {args.csv.name}, {len(clean)} rows streamed (score, then learn); faults on rows {start}..{end - 1} "
        f"({int(active.sum())} active). Defaults of MultivariateDetector. CPU: process time, best of 3, 8 axes.\n"
    )
    write_results("alerts_multivariate", rows, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
