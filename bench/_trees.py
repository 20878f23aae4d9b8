"""Another commit's tree beside this one, for the benchmarks that run the same script in both trees in turn
(``bench.alerts_cpu``, ``bench.alerts_cold_cpu``, ``bench.alerts_same``), or a checkout's whole commands
(``bench.ingest``, ``bench.query_scale``)."""

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


def own_python(tree: Path) -> str:
    """The interpreter a user of the checkout at ``tree`` runs its commands with: its ``.venv``'s, which
    ``make install`` builds with the interpreter scripts/pick-python.sh picks; this one when it has none (a
    tree unpacked apart)."""
    venv_python = tree.resolve() / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def described(python: str) -> str:
    """``python`` in words for a benchmark's notes: the interpreter under the venv, and its version."""
    said = [python, "-c", "import sys; print(sys._base_executable, sys.version.split()[0])"]
    return subprocess.run(said, capture_output=True, text=True, check=True).stdout.strip()


def compile_bytecode(tree: Path, python: str) -> None:
    """The tree's own packages compiled once by ``python`` before a benchmark's timed rounds, as a user's Python
    keeps them (``pip install`` compiles a package; an editable checkout writes ``__pycache__`` on its first
    run). This machine sets PYTHONDONTWRITEBYTECODE=1, so without this every timed command compiled them again
    (~25-40 ms of CPU; the libraries in the venv are compiled at install). The timed commands write nothing;
    they read these."""
    packages = sorted(path.name for path in tree.iterdir() if (path / "__init__.py").is_file())
    subprocess.run([python, "-m", "compileall", "-q", *packages], cwd=tree, check=True)
