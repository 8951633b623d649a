"""``python -m fuzz <name> [--runs N | --seconds S]``: see ``fuzz.run``."""

import sys

from fuzz.run import main

sys.exit(main())
