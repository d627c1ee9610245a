"""`python -m sweeplab.ensemble`: see `cli.py`."""

import sys

from sweeplab.ensemble.cli import main

sys.exit(main())
