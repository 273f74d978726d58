"""``python -m mmmlib <command>``: see :mod:`mmmlib.cli`."""

import sys

from mmmlib.cli import main

sys.exit(main())
