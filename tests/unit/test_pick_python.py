"""scripts/pick-python.sh: the interpreter `make install` builds .venv with."""

import os
import stat
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pick-python.sh"


def pick(path: str) -> str:
    done = subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "PATH": path}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def fake_python(folder: Path, answer: int) -> Path:
    """A `python3` that answers the script's check with ``answer`` (0: usable and optimized)."""
    fake = folder / "python3"
    fake.write_text(f"#!/bin/sh\nexit {answer}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def test_it_names_an_interpreter_that_runs_and_is_new_enough():
    chosen = pick(os.environ.get("PATH", "/usr/bin:/bin"))
    version = subprocess.run([chosen, "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"], capture_output=True)
    assert version.stdout.strip() == b"True"


def test_the_first_usable_python3_on_path_wins(tmp_path: Path):
    fake = fake_python(tmp_path, 0)
    assert pick(f"{tmp_path}:/usr/bin:/bin") == str(fake)


def test_a_python3_that_fails_the_check_is_passed_over(tmp_path: Path):
    fake = fake_python(tmp_path, 1)
    chosen = pick(f"{tmp_path}:/usr/bin:/bin")
    assert chosen != str(fake)
    assert chosen == "python3" or Path(chosen).is_absolute()
