"""consumer_alerts' CPU per reading against a reference tree (a benchmark, not a timed test).

The engine over the last 40 % of the real export with the density model trained on the first 60 % (14 axes),
``time.process_time`` (CPU, so other work on the machine counts less), best of ``--repeats`` per run, each
configuration in its own process, the runs interleaved (reference, this tree's default set, this tree without
``multivariate``) and the whole round done ``--rounds`` times. The reference tree is an older commit unpacked
apart with ``git archive`` (default 4141f27, the budget of issue 21: at most 2x its CPU).

    .venv/bin/python -m bench.alerts_cpu [--reference-commit 4141f27] [--rounds 2] [--repeats 3]

Results: ``bench/results/alerts_cpu.{json,md}`` against 4141f27, ``alerts_cpu_vs_<commit>`` against another.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench._trees import run_in, unpacked
from bench.results import write_results

HERE = Path(__file__).resolve().parents[1]
REAL_EXPORT = HERE.parent / "shared" / "data" / "RMBR4-2_export_test.csv"

# Run inside the tree under test (its own modules first on the path; older trees kept the CSV reader elsewhere).
MEASURE = """
import sys, time
sys.path.insert(0, sys.argv[1])
try:
    from common.csvio.controller_csv import CsvOptions
except ImportError:
    from common.controller_csv import CsvOptions
from consumer_alerts.engine import DetectorEngine, EngineConfig
from consumer_alerts.sources import export_readings
from consumer_alerts.training import TrainingOptions, train
readings = list(export_readings(sys.argv[2], CsvOptions("RMBR4-2", list(range(1, 15)))))
cut = int(len(readings) * 0.6)
model = train(readings[:cut], TrainingOptions(kind="density"), robot_id="RMBR4-2")
config = EngineConfig()
if sys.argv[4]:
    config = EngineConfig(detectors=tuple(d for d in config.detectors if d not in sys.argv[4].split(",")))
best = float("inf")
for _ in range(int(sys.argv[3])):
    engine = DetectorEngine(config, model)
    started = time.process_time()
    for reading in readings[cut:]:
        engine.process(reading)
    best = min(best, time.process_time() - started)
print(",".join(config.detectors), best / (len(readings) - cut) * 1e6)
"""


def measure(tree: Path, csv: Path, repeats: int, without: str = "") -> tuple[str, float]:
    out = run_in(tree, MEASURE, str(csv), str(repeats), without).split()
    return out[-2], float(out[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-commit", default="4141f27", help="the commit to compare with (default 4141f27)")
    parser.add_argument("--csv", type=Path, default=REAL_EXPORT)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with unpacked(args.reference_commit) as reference:
        rows = rounds(reference, args)
    # The budget's reference keeps the plain name; a run against another commit (e.g. the parent of a change:
    # did it add CPU?) gets its own file beside it.
    name = "alerts_cpu" if args.reference_commit == "4141f27" else f"alerts_cpu_vs_{args.reference_commit}"
    write_results(name, rows, notes=f"- Reference: {args.reference_commit}; data: {args.csv.name}.")
    return 0


def rounds(reference: Path, args) -> list[dict]:
    runs = {"reference": (reference, ""), "default": (HERE, ""), "without multivariate": (HERE, "multivariate")}
    rows = []
    for n in range(args.rounds):
        row: dict = {"round": n + 1}
        for name, (tree, without) in runs.items():
            detectors, us = measure(tree, args.csv, args.repeats, without)
            row[f"{name} us/reading"] = round(us, 1)
            row[f"{name} detectors"] = detectors
        row["default / reference"] = round(row["default us/reading"] / row["reference us/reading"], 2)
        rows.append(row)
        print(row, flush=True)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
