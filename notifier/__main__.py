import sys

from notifier.cli import main

sys.exit(main(sys.argv[1:]))
