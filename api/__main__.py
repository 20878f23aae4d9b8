import sys

from api.cli import main

sys.exit(main(sys.argv[1:]))
