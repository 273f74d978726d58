"""``python -m mmmlib.training --params params.json``: what every process of ``accelerate launch`` runs.

:func:`mmmlib.training.launch.launch` starts it. It is a module of its own because ``-m``
must not run a module the package ``__init__`` already imports (runpy would run it twice).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmmlib.training.params import TrainParams
from mmmlib.training.trainer import train


def main(argv: list[str] | None = None) -> None:
    """Train with the parameters of a ``params.json`` written by 03_train.

    :param argv: the command-line arguments (``sys.argv[1:]`` when ``None``).
    """
    parser = argparse.ArgumentParser(prog="python -m mmmlib.training",
                                     description="One training process (started by accelerate launch).")
    parser.add_argument("--params", required=True, help="params.json written by 03_train (all TrainParams fields)")
    args = parser.parse_args(argv)
    values = json.loads(Path(args.params).read_text())
    values.pop("stage", None)
    p = TrainParams(**values)
    with p.param_errors():
        train(p)


if __name__ == "__main__":
    main()
