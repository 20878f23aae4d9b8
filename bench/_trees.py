"""Another commit's tree beside this one, for the benchmarks that run the same script in both trees in turn
(``bench.alerts_cpu``, ``bench.alerts_cold_cpu``, ``bench.alerts_same``)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


@contextmanager
def unpacked(commit: str) -> Iterator[Path]:
    """The tree of ``commit`` unpacked apart (``git archive``), removed after."""
    with tempfile.TemporaryDirectory(prefix="bench-tree-") as reference:
        archive = subprocess.run(["git", "-C", str(HERE), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", reference], input=archive.stdout, check=True)
        yield Path(reference)


def run_in(tree: Path, script: str, *args: str) -> str:
    """The standard output of ``script`` run by this interpreter with ``tree`` as its first argument; the
    script puts ``tree`` first on its path, so that tree's modules are the ones measured."""
    return subprocess.run(
        [sys.executable, "-c", script, str(tree), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",  # not this tree's folder: the tree under test comes first on the path
    ).stdout
