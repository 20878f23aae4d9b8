#!/usr/bin/env bash
# Prints the interpreter `make install` builds .venv with (and so `make test`, `make demo`, `.ci/run`),
# when PYTHON is not given:
#   the first of python3, then python3.11, python3.12, ... (on PATH, then in /usr/bin) that is Python >= 3.11,
#   was built with optimizations (PGO and LTO) and can make a virtual environment; else plain `python3`.
# Why: an optimized build runs every command with 17-19 % less CPU than pyenv's default build
# (docs/benchmarks.md, section 3).
# How a build is known to be optimized (sysconfig):
#   - `--enable-optimizations` or `--with-lto` in CONFIG_ARGS: python.org's builds, the Docker images
#     (the Dockerfile's python:3.11-slim), pyenv or uv when asked for them;
#   - Debian's and Ubuntu's packaged interpreter (its `deb_system` install scheme): built with PGO and LTO, but
#     its sysconfig leaves those flags out on purpose (Debian bug #934771), so CONFIG_ARGS cannot tell.
set -euo pipefail

usable_and_optimized='
import sys, sysconfig
import venv, ensurepip  # can make the virtual environment
configured = sysconfig.get_config_var("CONFIG_ARGS") or ""
optimized = (
    "--enable-optimizations" in configured
    or "--with-lto" in configured
    or "deb_system" in sysconfig.get_scheme_names()
)
sys.exit(0 if sys.version_info >= (3, 11) and optimized else 1)
'

# `|| true`: a machine with no python3.X on PATH or in /usr/bin (macOS, the python images) must still get an answer.
versions="$( (compgen -c python3. || true; cd /usr/bin 2>/dev/null && ls python3.* 2>/dev/null || true) | awk -F. '/^python3\.[0-9]+$/ && $2 >= 11' | sort -uV)"
for name in python3 $versions; do
    for candidate in "$(command -v "$name" || true)" "/usr/bin/$name"; do
        if [[ -x "$candidate" ]] && "$candidate" -c "$usable_and_optimized" 2>/dev/null; then
            echo "$candidate"
            exit 0
        fi
    done
done
echo python3
