"""``python -m skconvfeat``: the study from the command line (see :mod:`skconvfeat.study._cli`)."""

import sys

from .study._cli import main

sys.exit(main())
