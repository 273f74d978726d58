"""``python -m mmmlib.evaluation.demo_summary RUN_DIR``: what a ``make demo`` run produced, in a few lines.

Prints, for each stage whose outputs exist under ``RUN_DIR``, where they are and the
numbers worth a glance; ends with the evaluation's headline numbers when there are some.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def data_lines(run_dir: Path) -> list[str]:
    """What 01 wrote under ``run_dir/data`` (files, rejects, tracks, loops, splits); none before it ran."""
    folder = run_dir / "data"
    if not (folder / "files.parquet").exists():
        return []
    files = pd.read_parquet(folder / "files.parquet")
    tracks = pd.read_parquet(folder / "tracks.parquet")
    loops = pd.read_parquet(folder / "loops.parquet")
    rejects = pd.read_csv(folder / "rejects.csv")
    splits = files["split"].value_counts().to_dict()
    return [
        f"01 data prep  -> {folder}",
        f"   {len(files)} files accepted, {len(rejects)} rejected; {len(tracks)} tracks, {len(loops)} loops; "
        f"splits {splits}",
        f"   figures: {folder / 'figures'}",
    ]


def stage_lines(run_dir: Path) -> list[str]:
    """One line per later stage whose main output exists."""
    lines = []
    checks = [
        ("02 tokenizer ", run_dir / "tokenizer.json"),
        ("03 training  ", run_dir / "model"),
        ("04 generation", run_dir / "generate"),
        ("05 evaluation", run_dir / "evaluate" / "report.html"),
    ]
    for name, path in checks:
        if path.exists():
            lines.append(f"{name} -> {path}")
    return lines


def headline_lines(run_dir: Path) -> list[str]:
    """Where the report is and 05's headline numbers (from ``summary.json``); none before 05 ran."""
    path = run_dir / "evaluate" / "summary.json"
    if not path.exists():
        return []
    summary = json.loads(path.read_text())
    ci = summary.get("nomml_exact_accuracy_ci") or [float("nan"), float("nan")]
    baseline = summary.get("baseline_nomml_exact_accuracy")
    return [
        "",
        f"Report: {run_dir / 'evaluate' / 'report.html'}",
        f"NOMML exact accuracy {summary['nomml_exact_accuracy']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}), "
        f"near (same feel, +-1 subdivision): {summary.get('nomml_near_accuracy', float('nan')):.3f}, "
        f"no-control baseline: {'n/a' if baseline is None else f'{baseline:.3f}'}",
        f"loopability {summary['loopability']:.3f}, validity {summary['validity']:.3f}, "
        f"{summary['num_generations']} generations",
    ]


def main(argv: list[str] | None = None) -> int:
    """``mmmlib demo-summary [RUN_DIR]``: where the demo wrote its outputs, and its headline numbers."""
    parser = argparse.ArgumentParser(prog="mmmlib demo-summary", description=main.__doc__)
    parser.add_argument("run_dir", nargs="?", default="runs/demo", help="the demo's run folder (default: runs/demo)")
    run_dir = Path(parser.parse_args(argv).run_dir)
    lines = data_lines(run_dir) + stage_lines(run_dir) + headline_lines(run_dir)
    print("\n".join(["", f"== make demo: outputs under {run_dir} =="] + (lines or ["(nothing yet)"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
