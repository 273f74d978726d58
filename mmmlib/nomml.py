"""``python -m mmmlib.nomml FILE...``: kept for scripts written before ``python -m mmmlib nomml``."""

import sys

from mmmlib.cli import main

if __name__ == "__main__":
    sys.exit(main(["nomml", *sys.argv[1:]]))
