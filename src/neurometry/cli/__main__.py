"""`python -m neurometry.cli ...` runs the command line."""

import sys

from neurometry.cli import main

sys.exit(main())
