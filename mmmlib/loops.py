"""``python -m mmmlib.loops FILE...``: kept for scripts written before ``python -m mmmlib loops``."""

import sys

from mmmlib.cli import main

if __name__ == "__main__":
    sys.exit(main(["loops", *sys.argv[1:]]))
