"""`python -m photoclass` (and `torchrun -m photoclass`) runs the command line."""

import sys

from .cli import main

sys.exit(main())
