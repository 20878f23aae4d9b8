import gc
import sys

from consumer_db.cli import main

# Stdout in pieces of 8 KiB: with PYTHONUNBUFFERED (the Dockerfile sets it) each line of a query's answer was a
# write of its own to the pipe or file, 4,200 for the fleet's 1-minute resample (docs/benchmarks.md section 3).
# The logs go to stderr, as they come. Here, not in main(): the tests capture stdout in their own process.
sys.stdout.reconfigure(write_through=False)
code = main(sys.argv[1:])
# Python's last collection at the exit walks every object not frozen, and what the command imported and made
# after its start-up (its queries, the driver's extras, their statements) lives until then anyway: frozen, the
# exit costs ~0.01 s of CPU instead of ~0.05 (docs/benchmarks.md, "fixed13"). Only here, in the process's own
# entry: the tests call main() in theirs.
gc.freeze()
sys.exit(code)
