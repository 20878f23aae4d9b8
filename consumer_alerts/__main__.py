import sys

from consumer_alerts.cli import main

sys.exit(main(sys.argv[1:]))
