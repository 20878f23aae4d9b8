"""Does this tree raise exactly the events of a reference tree? The guard of a change meant to cost less, not
to decide differently (a check on fixed feeds, run beside ``bench.alerts_cpu``; no services needed).

Every alert event the engine publishes (``DetectorEngine.process``), as its wire bytes, on fixed feeds with faults:

- ``quality``: ``bench.alerts_quality``'s runs (the real export, faults of ``producer.faults``, seeds 1-30, each
  configuration of that benchmark);
- ``broad``: ``bench.alerts_quality --broad tuning`` (faults of ``producer.broad_faults``, program changes);
- ``service``: the synthetic fleet with faults as the service takes it (``consumer_alerts.service``'s
  ``events_per_reading``: decoded off the wire, each robot's model learned, the health pipeline on), its health
  events too.

Each tree runs in its own process (its own modules first on the path); the reference is unpacked apart with
``git archive``. The benchmarks' own result files are not written.

    .venv/bin/python -m bench.alerts_same [--reference-commit 331413d] [--parts quality,broad,service]

Results: ``bench/results/alerts_same_vs_<commit>.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from bench._trees import run_in, unpacked
from bench.alerts_quality import REAL_EXPORT
from bench.results import write_results

HERE = Path(__file__).resolve().parents[1]
PARTS = ("quality", "broad", "service")

# Run inside the tree under test (its modules first on the path); prints one event per line, and keeps the
# benchmark's result files to itself.
RECORD = """
import sys
sys.path.insert(0, sys.argv[1])
from consumer_alerts import engine
lines = []
judge = engine.DetectorEngine.process
def process(self, reading, *place):  # the service gives its place on Kafka too (a tree whose engine takes it)
    alerts = judge(self, reading, *place)
    lines.extend(a.to_bytes().decode() for a in alerts)
    return alerts
engine.DetectorEngine.process = process
part = sys.argv[2]
if part in ("quality", "broad"):
    from bench import alerts_quality
    alerts_quality.write_results = lambda *args, **kwargs: None
    alerts_quality.main(["--csv", sys.argv[3], *(["--broad", "tuning"] if part == "broad" else [])])
else:
    from datetime import UTC, datetime
    from common.wire.bus import Message
    from consumer_alerts import service
    from consumer_alerts.health.monitor import HealthConfig, HealthMonitor
    from producer.synthetic import synthetic_fleet
    robots, ticks = 8, 9000
    fleet = synthetic_fleet(robots, seed=7, start=datetime(2026, 1, 1, tzinfo=UTC), faults=True, fault_period_s=1200)
    detectors = engine.DetectorEngine(engine.EngineConfig())
    intake = service.Intake(health=HealthMonitor(HealthConfig()), health_topic="health")
    batch = []
    for offset in range(robots * ticks):
        reading = next(fleet)
        batch.append(Message("readings", 0, offset, reading.robot_id.encode(), reading.to_bytes()))
        if len(batch) == 500:
            for _ in service.events_per_reading(detectors, batch, intake=intake):
                pass
            lines.extend("health " + e.to_bytes().decode() for e in intake.health.take_events())
            batch = []
sys.stdout.write("\\n".join(["--- events ---", *lines]) + "\\n")
"""


def events(tree: Path, part: str) -> list[str]:
    out = run_in(tree, RECORD, part, str(REAL_EXPORT))
    return out.split("--- events ---\n", 1)[1].splitlines()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-commit", default="331413d", help="the commit to compare with (default 331413d)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which feeds, comma-separated ({','.join(PARTS)})")
    args = parser.parse_args(argv)
    rows = []
    with unpacked(args.reference_commit) as reference:
        for part in args.parts.split(","):
            before, after = events(reference, part), events(HERE, part)
            differ = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), None)
            if differ is None and len(before) != len(after):
                differ = min(len(before), len(after))
            rows.append(
                {
                    "feed": part,
                    "reference events": len(before),
                    "events": len(after),
                    "identical": before == after,
                    "first difference": "" if differ is None else f"event {differ + 1}",
                    "sha256": hashlib.sha256("\n".join(after).encode()).hexdigest()[:16],
                }
            )
            print(rows[-1], flush=True)
    write_results(f"alerts_same_vs_{args.reference_commit}", rows, notes=f"- Reference: {args.reference_commit}.")
    return 0 if all(row["identical"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
