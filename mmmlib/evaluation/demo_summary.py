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
    return [
        "",
        f"Report: {run_dir / 'evaluate' / 'report.html'}",
        f"NOMML exact accuracy {_value(summary, 'nomml_exact_accuracy')} (95% CI), "
        f"near (same feel, +-1 subdivision): {_value(summary, 'nomml_near_accuracy', ci=False)}, "
        f"no-control baseline: {_value(summary, 'baseline_nomml_exact_accuracy', ci=False)}",
        f"loopability {_value(summary, 'loopability', ci=False)}, validity {_value(summary, 'validity', ci=False)}, "
        f"{summary['num_generations']} generations",
        *loop_lines(summary),
    ]


def _value(summary: dict, key: str, ci: bool = True) -> str:
    """``0.912 [0.880-0.940]`` (with ``<key>_ci`` when known); ``n/a`` when the number is missing
    (null in ``summary.json``: a run that did not request NOMML, or has no marked loops)."""
    value = summary.get(key)
    if value is None:
        return "n/a"
    interval = (summary.get(f"{key}_ci") or [None, None]) if ci else [None]
    return f"{value:.3f}" + (f" [{interval[0]:.3f}-{interval[1]:.3f}]" if None not in interval else "")


def loop_lines(summary: dict) -> list[str]:
    """05's loop numbers: shares of tracks with an exact / expressive loop, marked-loop seams, and
    the loop count / duration accuracies with their no-control baselines (n/a when not measured)."""
    if "exact_loop_share" not in summary:  # a summary.json written before 05 measured them
        return []
    lines = [f"loops: exact {_value(summary, 'exact_loop_share')}, "
             f"expressive {_value(summary, 'expressive_loop_share')}, "
             f"marked loops repeating in their track {_value(summary, 'marked_loop_repeat_share')}, "
             f"marked-loop seam {_value(summary, 'marked_loop_seam_share')}",
             f"loop count accuracy {_value(summary, 'loop_count_accuracy')} "
             f"(baseline {_value(summary, 'baseline_loop_count_accuracy')}), "
             f"loop duration accuracy {_value(summary, 'loop_duration_accuracy')} "
             f"(baseline {_value(summary, 'baseline_loop_duration_accuracy')})"]
    return lines + [f"   {key}: {note}" for key, note in (summary.get("loop_notes") or {}).items()]


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
