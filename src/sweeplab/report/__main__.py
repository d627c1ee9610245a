"""`python -m sweeplab.report`: see `cli.py`."""

import sys

from sweeplab.report.cli import main

sys.exit(main())
