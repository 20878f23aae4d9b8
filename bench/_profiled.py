"""Run a service under pyinstrument: ``python -m bench._profiled OUT.txt MODULE [ARGS ...]``.

Runs ``python -m MODULE ARGS`` in this process with a pyinstrument profiler around it, and when the module
returns (a service returns after SIGTERM, having flushed and committed) writes to OUT.txt the flat profile
(self time per function) followed by the call tree, and to OUT.json the top functions by self time.

pyinstrument samples the main thread only, and the services do their blocking database work in worker
threads (``asyncio.to_thread``). So that the profile shows that work, ``to_thread`` runs the call inline
here: the services await it at once anyway (only aiokafka's prefetch runs meanwhile in the real service),
so the profile says where the time goes, but the rate of a profiled run is not the service's.
"""

from __future__ import annotations

import asyncio
import json
import runpy
import sys
from collections import defaultdict
from pathlib import Path

from pyinstrument import Profiler


async def _inline(func, /, *args, **kwargs):
    return func(*args, **kwargs)


def hotspots(root, top: int = 15) -> list[dict]:
    """Self time per function over the whole call tree, highest first, as shares of the total."""
    totals: dict[tuple[str, str], float] = defaultdict(float)
    stack = [root] if root is not None else []
    while stack:
        frame = stack.pop()
        totals[(frame.function, frame.file_path_short or "")] += frame.total_self_time
        stack.extend(child for child in frame.children if not child.is_synthetic)
    whole = root.time if root is not None and root.time else 1.0
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [
        {"function": f, "file": path, "self_s": round(s, 3), "share": round(s / whole, 3)} for (f, path), s in ranked
    ]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out, module, args = Path(argv[0]), argv[1], argv[2:]
    asyncio.to_thread = _inline  # see the module docstring
    sys.argv = [module, *args]
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        session = profiler.stop()
        out.parent.mkdir(parents=True, exist_ok=True)
        flat = profiler.output_text(unicode=False, color=False, flat=True)
        tree = profiler.output_text(unicode=False, color=False)
        out.write_text(
            f"# python -m {module} {' '.join(args)}\n\n## self time per function\n{flat}\n## call tree\n{tree}"
        )
        out.with_suffix(".json").write_text(
            json.dumps(
                {
                    "module": module,
                    "duration_s": round(session.duration, 3),
                    "hotspots": hotspots(session.root_frame()),
                },
                indent=2,
            )
            + "\n"
        )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
