"""``python -m skconvfeat``: the study from the command line (see :mod:`skconvfeat._cli`)."""

import sys

from ._cli import main

sys.exit(main())
