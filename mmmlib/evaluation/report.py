"""The evaluation report: headline numbers, verdict, tables, ``summary.json``/``.md``, HTML.

Input (written by the generation stage): ``{source}/{label}/MIDI/*.mid`` and one
``{source}/{label}/RESULTS_{rank}.csv`` per rank, one row per generated track and
attempt (:data:`RESULT_COLUMNS`, plus optional ``<control>_requested/_measured`` pairs).

The metrics live in :mod:`mmmlib.evaluation.metrics` (control fidelity, validity, cost),
:mod:`mmmlib.evaluation.loopability` and :mod:`mmmlib.evaluation.distributions`; the figures in
:mod:`mmmlib.evaluation.figures`; the merge in :mod:`mmmlib.evaluation.merge`; this module writes
``summary.json``/``summary.md`` and the tables, and converts the executed notebook::

    python -m mmmlib evaluate merge runs/demo/generate/LABEL
    python -m mmmlib evaluate report runs/demo/05_evaluate.ipynb runs/demo/evaluate/report.html
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mmmlib.core.midi import read_score_cached
from mmmlib.evaluation.merge import merge_results


def generated_features(final: pd.DataFrame) -> pd.DataFrame:
    """Per-track features (:mod:`mmmlib.evaluation.distributions`) of the final generated tracks.

    The note density is per beat of the generated segment (``n_bars`` bars), as the
    reference windows' is per beat of the window.
    """
    from mmmlib.evaluation.distributions import score_features
    from mmmlib.evaluation.loopability import segment_ticks

    rows = []
    for (path, gen_id), part in final.groupby(["midi_file", "gen_id"], sort=False):
        num_bars = pd.to_numeric(part["n_bars"], errors="coerce").max() if "n_bars" in part else None
        try:
            score = read_score_cached(path)
            rows += score_features(score, str(gen_id), part["track_idx"].tolist(), segment_ticks(score, num_bars))
        except Exception as exc:  # an unreadable file: say which, go on
            print(f"features skipped ({exc}): {path}")
    return pd.DataFrame(rows)


def generation_bars(final: pd.DataFrame) -> int | None:
    """The generations' length in bars (the most frequent ``n_bars``); None when unknown."""
    bars = pd.to_numeric(final["n_bars"], errors="coerce").dropna() if "n_bars" in final else pd.Series(dtype=float)
    bars = bars[bars > 0]
    if bars.empty:
        return None
    if bars.nunique() > 1:
        print(f"generations of several lengths {sorted(bars.unique().astype(int))}: reference windows of "
              f"{int(bars.mode().max())} bars (the most frequent)")
    return int(bars.mode().max())


def compare_to_reference(
    final: pd.DataFrame, reference_dir: str, split: str = "test", max_files: int = 200,
    num_resamples: int = 1000, seed: int = 0, use_windows: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Feature distributions of the generated tracks against a reference split.

    :param reference_dir: a data-prep output folder (``files.parquet``); "" skips the comparison.
    :param use_windows: compare with reference windows of the generations' length
        (:func:`mmmlib.evaluation.reference.reference_windows`, at the reference loops); False
        compares with whole reference files (biased by length: a song spans a wider pitch range).
    :return: ``(generated_features, reference_features, comparison)``; empty frames when skipped.
    """
    from mmmlib.evaluation.distributions import compare_features, reference_features
    from mmmlib.evaluation.reference import reference_windows

    generated = generated_features(final)
    if not reference_dir:
        print("no reference_dir: distribution metrics skipped")
        return generated, pd.DataFrame(), pd.DataFrame()
    num_bars = generation_bars(final) if use_windows else None
    if use_windows and num_bars is None:
        print("the generations' length (n_bars) is unknown: whole reference files are compared")
    if num_bars is None:
        reference = reference_features(reference_dir, split, max_files, seed)
    else:
        reference = reference_windows(reference_dir, num_bars, split, max_files, seed)
        print(f"reference: {len(reference)} windows of {num_bars} bars; by source: "
              f"{reference['window_source'].value_counts().to_dict() if len(reference) else {}}")
    if generated.empty or reference.empty:
        print(f"distribution metrics skipped: {len(generated)} generated, {len(reference)} reference tracks")
        return generated, reference, pd.DataFrame()
    return generated, reference, compare_features(generated, reference, num_resamples, seed)


def tables_of(fidelities: list, validity: dict, status: pd.DataFrame, loopability: pd.DataFrame,
              distributions: pd.DataFrame, loops: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The tables written next to the summary, by file name.

    :param loops: the loop numbers (:func:`loop_summary`), written as ``tables/loops``.
    """
    from mmmlib.evaluation.metrics import fidelity_table

    tables = {"control_fidelity": fidelity_table(fidelities)}
    for f in fidelities:
        tables.update({f"{f.name}_per_level": f.per_level, f"{f.name}_by_group": f.by_group,
                       f"{f.name}_confusion": f.confusion})
    validity_table = pd.Series(validity, name="value", dtype=object).rename_axis("metric").to_frame()
    tables.update(validity=validity_table, status_counts=status,
                  loopability=loopability, distributions=distributions)
    if loops is not None:
        tables["loops"] = loops
    return tables


# --------------------------------------------------------------------------- summary
def headline(fidelity: pd.DataFrame, validity: dict, loopability: pd.DataFrame,
             distributions: pd.DataFrame | None = None) -> dict:
    """The numbers of ``summary.json`` (NaN becomes null when written)."""
    nomml = fidelity.loc["nomml"] if "nomml" in fidelity.index else pd.Series(dtype=object)

    def get(key: str, default=np.nan):
        value = nomml.get(key, default) if len(nomml) else default
        if isinstance(default, tuple):  # a CI: always a pair, even when the table holds NaN
            return tuple(value) if isinstance(value, (tuple, list)) else default
        return value

    summary = {
        "nomml_exact_accuracy": get("exact_accuracy"),
        "nomml_exact_accuracy_ci": get("exact_accuracy_ci", (np.nan, np.nan)),
        "nomml_near_accuracy": get("near_accuracy"),
        "nomml_near_accuracy_ci": get("near_accuracy_ci", (np.nan, np.nan)),
        "nomml_spearman": get("spearman"),
        "baseline_nomml_exact_accuracy": get("baseline_exact_accuracy"),
        "baseline_nomml_exact_accuracy_ci": get("baseline_exact_accuracy_ci", (np.nan, np.nan)),
        "baseline_nomml_near_accuracy": get("baseline_near_accuracy"),
        "nomml_gain": get("gain"),
        "nomml_gain_ci": get("gain_ci", (np.nan, np.nan)),
        "loopability": loopability.loc["tracks", "share"],
        "loopability_ci": loopability.loc["tracks", "share_ci"],
        "file_loopability": loopability.loc["files", "share"],
        "seam_continues": loopability.loc["seam", "share"],
        **{k: validity[k] for k in ("validity", "num_generations", "num_successful_generations",
                                    "attempts_per_success", "tokens_per_loop", "seconds_per_loop")},
        "controls": {name: {k: row[k] for k in ("exact_accuracy", "exact_accuracy_ci", "near_accuracy",
                                                 "spearman", "num_tracks")}
                     for name, row in fidelity.iterrows()},
    }
    summary.update(loop_headline(fidelity, loopability))
    if distributions is not None and len(distributions):
        summary["distribution_overlap"] = distributions["overlap"].to_dict()
        summary["distribution_kl"] = distributions["kl"].to_dict()
    summary["verdict"] = verdict(summary)
    return summary


LOOP_SHARES = {"exact_loop_share": "tracks", "expressive_loop_share": "expressive",
               "marked_loop_seam_share": "marked_seam",
               "marked_loop_repeat_share": "marked_repeat"}  # summary key: row of the loopability table
LOOP_CONTROLS = {"loop_count_accuracy": "loop_count", "loop_duration_accuracy": "loop_duration_bin"}


def loop_headline(fidelity: pd.DataFrame, loopability: pd.DataFrame) -> dict:
    """The loop numbers of ``summary.json``: shares of tracks with an exact / expressive loop, of
    marked loops whose seam continues, and loop count / duration accuracy with their baselines.

    Each comes with its 95% CI (``<key>_ci``); ``loop_notes`` says why a number is missing.
    """
    nan_ci = (np.nan, np.nan)
    out: dict = {}
    notes = {}
    for key, unit in LOOP_SHARES.items():
        row = loopability.loc[unit] if unit in loopability.index else pd.Series(dtype=object)
        out[key] = row.get("share", np.nan)
        out[f"{key}_ci"] = tuple(row["share_ci"]) if isinstance(row.get("share_ci"), (tuple, list)) else nan_ci
        if isinstance(row.get("note"), str) and row["note"]:
            notes[key] = row["note"]
    for key, control in LOOP_CONTROLS.items():
        row = fidelity.loc[control] if control in fidelity.index else pd.Series(dtype=object)
        for prefix, column in (("", "exact_accuracy"), ("baseline_", "baseline_exact_accuracy")):
            out[f"{prefix}{key}"] = row.get(column, np.nan)
            ci = row.get(f"{column}_ci")
            out[f"{prefix}{key}_ci"] = tuple(ci) if isinstance(ci, (tuple, list)) else nan_ci
        if control not in fidelity.index:
            notes[key] = f"no {control} control requested in this run ({control}_requested is -1 or empty)"
        elif not np.isfinite(out[f"baseline_{key}"]):
            notes[f"baseline_{key}"] = f"no generation without the {control} control in this run (no baseline)"
    out["loop_notes"] = notes
    return out


def loop_summary(numbers: dict) -> pd.DataFrame:
    """The loop numbers of :func:`loop_headline` as a table: ``value``, ``ci``, ``baseline``,
    ``baseline_ci`` and ``note`` per metric."""
    rows, notes = [], numbers.get("loop_notes", {})
    for key in [*LOOP_SHARES, *LOOP_CONTROLS]:  # shares have no baseline: n/a
        rows.append({"metric": key, "value": numbers.get(key, np.nan), "ci": numbers.get(f"{key}_ci"),
                     "baseline": numbers.get(f"baseline_{key}", np.nan),
                     "baseline_ci": numbers.get(f"baseline_{key}_ci", np.nan),
                     "note": "; ".join(n for n in (notes.get(key), notes.get(f"baseline_{key}")) if n)})
    return pd.DataFrame(rows).set_index("metric")


def _fmt(value: float, ci: tuple | None = None) -> str:
    """``0.912 [0.880, 0.940]``; "(no CI)" when the interval is unknown; "n/a" for a missing value."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if ci is None:
        return f"{value:.3f}"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if np.all(np.isfinite(ci)) else " (no CI)")


def verdict(summary: dict) -> str:
    """One plain sentence: does NOMML control beat the no-control baseline? Bad news included."""
    accuracy, baseline = summary["nomml_exact_accuracy"], summary["baseline_nomml_exact_accuracy"]
    controlled = f"exact NOMML accuracy {_fmt(accuracy, summary['nomml_exact_accuracy_ci'])}"
    if "nomml" not in summary.get("controls", {"nomml": None}):
        return "This run requested no NOMML control, so NOMML control fidelity was not measured."
    if not np.isfinite(accuracy):
        return ("NOMML control was requested, but no successful generation has a NOMML measurement, so its "
                f"fidelity could not be measured (validity {_fmt(summary.get('validity', np.nan))}).")
    if not np.isfinite(baseline):
        return (f"With NOMML control: {controlled}. The run has no 'no control' generations (nomml = -1), "
                "so there is no baseline to compare with.")
    versus = f"{controlled} vs {_fmt(baseline, summary['baseline_nomml_exact_accuracy_ci'])} without control"
    low, high = summary["nomml_gain_ci"]
    gain = f"gain {summary['nomml_gain']:+.3f}, 95% CI [{low:+.3f}, {high:+.3f}]"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"NOMML control cannot be judged without a bootstrap (bootstrap = 0): {versus}."
    if low > 0:
        return f"NOMML control works: {versus} ({gain})."
    if high < 0:
        return f"NOMML control does WORSE than no control: {versus} ({gain})."
    return f"NOMML control does NOT clearly beat the no-control baseline: {versus} ({gain}, includes 0)."


def to_markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table (no extra dependency), numbers rounded, CI pairs as [low, high]."""
    if frame.empty:
        return "(none)"
    frame = frame.reset_index() if frame.index.name or not isinstance(frame.index, pd.RangeIndex) else frame

    def cell(value) -> str:
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return "[" + ", ".join(cell(v) for v in value) + "]"
        if isinstance(value, (float, np.floating)):
            return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def jsonable(value):
    """Plain JSON values: NaN/inf become null, numpy scalars Python numbers, tuples lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    return value


def write_outputs(output_dir: str | Path, summary: dict, tables: dict[str, pd.DataFrame]) -> dict[str, Path]:
    """Write ``summary.json``, ``summary.md`` and each table as ``tables/<name>.csv`` and ``.md``."""
    output_dir = Path(output_dir)
    (output_dir / "tables").mkdir(parents=True, exist_ok=True)
    written = {}
    for name, table in tables.items():
        table.to_csv(output_dir / "tables" / f"{name}.csv")
        (output_dir / "tables" / f"{name}.md").write_text(to_markdown(table) + "\n")
        written[name] = output_dir / "tables" / f"{name}.csv"
    written["summary.json"] = output_dir / "summary.json"
    written["summary.json"].write_text(json.dumps(jsonable(summary), indent=2) + "\n")
    numbers = {k: v for k, v in summary.items() if not isinstance(v, dict) and k != "verdict"}
    numbers = pd.Series(numbers, name="value", dtype=object).rename_axis("metric").to_frame()
    lines = ["# Evaluation summary", "", f"**Verdict.** {summary['verdict']}", "",
             "Intervals in brackets are 95% bootstrap confidence intervals (generations resampled).", "",
             "## Headline numbers", "", to_markdown(numbers)]
    for name, table in tables.items():
        lines += ["", f"## {name.replace('_', ' ')}", "", to_markdown(table)]
    written["summary.md"] = output_dir / "summary.md"
    written["summary.md"].write_text("\n".join(lines) + "\n")
    return written


# --------------------------------------------------------------------------- report and CLI
def export_html(notebook: str | Path, html: str | Path, no_input: bool = False) -> Path:
    """Convert an executed notebook into a standalone HTML report (figures and audio embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=no_input, exclude_input_prompt=no_input,
                            exclude_output_prompt=no_input)
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook), as_version=4))
    html = Path(html)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(body, encoding="utf-8")
    return html


def main(argv: list[str] | None = None) -> int:
    """``mmmlib evaluate merge LABEL_DIR`` or ``mmmlib evaluate report EXECUTED.ipynb OUT.html``."""
    parser = argparse.ArgumentParser(prog="mmmlib evaluate", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="join RESULTS_*.csv of {source}/{label} into RESULTS.csv")
    merge.add_argument("label_dir")
    report = sub.add_parser("report", help="convert the executed 05_evaluate notebook to HTML")
    report.add_argument("notebook")
    report.add_argument("html")
    report.add_argument("--no-input", action="store_true", help="hide the code cells")
    args = parser.parse_args(argv)
    if args.command == "merge":
        merged = merge_results(args.label_dir)
        target = Path(args.label_dir) / "RESULTS.csv"
        print(f"{len(merged)} rows, {merged['gen_id'].nunique()} generations -> {target}")
    else:
        print(f"report written: {export_html(args.notebook, args.html, args.no_input)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
