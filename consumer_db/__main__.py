import sys

from consumer_db.cli import main

sys.exit(main(sys.argv[1:]))
