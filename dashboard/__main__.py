import os
import sys

from dashboard.memory import ALLOCATOR

if "PYTHONMALLOC" not in os.environ:  # chosen when the interpreter starts: start again with it
    os.environ["PYTHONMALLOC"] = ALLOCATOR
    os.execv(sys.executable, [sys.executable, "-m", "dashboard", *sys.argv[1:]])

from dashboard.cli import main  # noqa: E402 - after the allocator is settled

sys.exit(main())
