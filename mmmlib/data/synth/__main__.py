"""``python -m mmmlib.data.synth OUT_DIR --num-files N --seed S`` (same as ``python -m mmmlib synth``)."""

from __future__ import annotations

import sys

from mmmlib.data.synth.corpus import main

if __name__ == "__main__":
    sys.exit(main())
