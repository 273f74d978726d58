"""Evaluation of a generation run: merge the per-rank results, measure, summarise, report.

Input (written by the generation stage): ``{source}/{label}/MIDI/*.mid`` and one
``{source}/{label}/RESULTS_{rank}.csv`` per rank, one row per generated track and
attempt (:data:`RESULT_COLUMNS`, plus optional ``<control>_requested/_measured`` pairs).

The metrics live in :mod:`mmmlib.evaluation.metrics` (control fidelity, validity, cost),
:mod:`mmmlib.evaluation.loopability` and :mod:`mmmlib.evaluation.distributions`; the figures in
:mod:`mmmlib.evaluation.figures`; this module merges, picks the final generations, writes
``summary.json``/``summary.md`` and the tables, and converts the executed notebook::

    python -m mmmlib.evaluation.report merge runs/demo/generate/LABEL
    python -m mmmlib.evaluation.report report runs/demo/05_evaluate.ipynb runs/demo/evaluate/report.html
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mmmlib.core.midi import read_score_cached

RESULT_COLUMNS = ["gen_id", "label", "rank", "attempt", "seed", "midi_path", "track_idx", "program",
                  "is_drum", "nomml_requested", "nomml_measured", "loop_count_requested", "n_loops_detected",
                  "is_loop", "n_bars", "n_notes", "n_tokens", "seconds", "status", "reason"]
# Without these a file cannot be merged: they form the key and say whether a row succeeded.
KEY_COLUMNS = ["gen_id", "attempt", "track_idx"]
REQUIRED_COLUMNS = [*KEY_COLUMNS, "status"]
TEXT_COLUMNS = {"gen_id", "label", "midi_path", "status", "reason", "is_drum", "is_loop"}


class MergeWarning(UserWarning):
    """A results file (named in the message) was skipped or partly skipped."""


# --------------------------------------------------------------------------- merge
def read_rank_file(path: Path) -> pd.DataFrame | None:
    """Rows of one ``RESULTS_{rank}.csv``, tolerating a rank that is still writing it.

    A last line without its newline is being written: it is left out. Rows with the
    wrong number of fields are left out with a :class:`MergeWarning`. A file that cannot
    be parsed or lacks :data:`REQUIRED_COLUMNS` gives a warning naming it and None.
    """
    text = path.read_bytes().decode("utf-8", errors="replace")
    if not text.strip():
        warnings.warn(f"{path}: empty results file skipped", MergeWarning, stacklevel=2)
        return None
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a truncated last line: its rank is still writing
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        warnings.warn(f"{path}: malformed results file skipped ({exc})", MergeWarning, stacklevel=2)
        return None
    if not rows:
        return None
    header, body = [h.strip() for h in rows[0]], rows[1:]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        warnings.warn(f"{path}: malformed results file skipped (no column {', '.join(missing)})",
                      MergeWarning, stacklevel=2)
        return None
    good = [r for r in body if len(r) == len(header)]
    if len(good) < len(body):
        warnings.warn(f"{path}: {len(body) - len(good)} malformed row(s) skipped", MergeWarning, stacklevel=2)
    return pd.DataFrame(good, columns=header, dtype=str)


def merge_results(label_dir: str | Path, write: bool = True) -> pd.DataFrame:
    """Join every ``RESULTS_*.csv`` of ``label_dir`` into ``RESULTS.csv`` and return the rows.

    Duplicate (gen_id, attempt, track_idx) rows keep the last one read (files in name
    order), so a rank that re-ran overrides itself. Safe to rerun, and to run while
    ranks write: the output is written to a temporary file, then renamed.

    :param label_dir: ``{source}/{label}``.
    :param write: write ``RESULTS.csv`` (else only return the frame).
    """
    label_dir = Path(label_dir)
    parts = [read_rank_file(p) for p in sorted(label_dir.glob("RESULTS_*.csv"))]
    parts = [p for p in parts if p is not None]
    if not parts:
        raise FileNotFoundError(f"no readable RESULTS_*.csv in {label_dir}")
    merged = pd.concat(parts, ignore_index=True).fillna("")
    merged = merged.drop_duplicates(KEY_COLUMNS, keep="last")
    order = [c for c in RESULT_COLUMNS if c in merged] + sorted(c for c in merged if c not in RESULT_COLUMNS)
    merged = merged[order]
    keys = pd.DataFrame({c: _sort_key(merged[c]) for c in KEY_COLUMNS}, index=merged.index)
    merged = merged.loc[keys.sort_values(KEY_COLUMNS, kind="mergesort").index]
    if write:
        write_atomic(merged, label_dir / "RESULTS.csv")
    return typed(merged.reset_index(drop=True))


def _sort_key(column: pd.Series) -> pd.Series:
    """Sort key: numbers by value when all are numbers, else text (numbers padded to sort as numbers)."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().all():
        return numbers
    return column.astype(str).str.zfill(20)


def write_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as CSV to a temporary file next to ``path``, then rename it over ``path``."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", newline="") as out:
            frame.to_csv(out, index=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def typed(results: pd.DataFrame) -> pd.DataFrame:
    """Numbers as numbers (empty cells as NaN); text columns as text."""
    out = results.copy()
    for column in out:
        if column not in TEXT_COLUMNS:
            out[column] = pd.to_numeric(out[column].replace("", np.nan), errors="coerce")
    out["attempt"] = out["attempt"].fillna(0)
    return out


def final_generations(results: pd.DataFrame, label_dir: str | Path) -> pd.DataFrame:
    """Rows of the final output of each generation: its last attempt whose rows are all ok.

    Adds ``midi_file``, the MIDI path resolved against ``label_dir`` when relative.
    """
    label_dir = Path(label_dir)
    ok = results["status"].astype(str).str.strip().str.lower().eq("ok")
    attempt_ok = ok.groupby([results["gen_id"], results["attempt"]]).transform("all")
    good = results[attempt_ok & results["track_idx"].notna()]
    last = good.groupby("gen_id")["attempt"].transform("max")
    final = good[good["attempt"] == last].copy()
    final["track_idx"] = final["track_idx"].astype(int)
    final["midi_file"] = pd.Series([str(_midi_file(p, label_dir)) for p in final["midi_path"].astype(str)],
                                   index=final.index, dtype=object)
    return final.reset_index(drop=True)


def _midi_file(midi_path: str, label_dir: Path) -> Path:
    path = Path(midi_path)
    if path.is_absolute():
        return path
    if not (label_dir / path).exists() and path.exists():
        return path  # written relative to the working directory after all
    return label_dir / path




def generated_features(final: pd.DataFrame) -> pd.DataFrame:
    """Per-track features (:mod:`mmmlib.evaluation.distributions`) of the final generated tracks."""
    from mmmlib.evaluation.distributions import score_features

    rows = []
    for (path, gen_id), part in final.groupby(["midi_file", "gen_id"], sort=False):
        try:
            rows += score_features(read_score_cached(path), str(gen_id), part["track_idx"].tolist())
        except Exception as exc:  # an unreadable file: say which, go on
            print(f"features skipped ({exc}): {path}")
    return pd.DataFrame(rows)


def compare_to_reference(
    final: pd.DataFrame, reference_dir: str, split: str = "test", max_files: int = 200,
    num_resamples: int = 1000, seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Feature distributions of the generated tracks against a reference split.

    :param reference_dir: a data-prep output folder (``files.parquet``); "" skips the comparison.
    :return: ``(generated_features, reference_features, comparison)``; empty frames when skipped.
    """
    from mmmlib.evaluation.distributions import compare_features, reference_features

    generated = generated_features(final)
    if not reference_dir:
        print("no reference_dir: distribution metrics skipped")
        return generated, pd.DataFrame(), pd.DataFrame()
    reference = reference_features(reference_dir, split, max_files, seed)
    if generated.empty or reference.empty:
        print(f"distribution metrics skipped: {len(generated)} generated, {len(reference)} reference tracks")
        return generated, reference, pd.DataFrame()
    return generated, reference, compare_features(generated, reference, num_resamples, seed)


def tables_of(fidelities: list, validity: dict, status: pd.DataFrame, loopability: pd.DataFrame,
              distributions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The tables written next to the summary, by file name."""
    from mmmlib.evaluation.metrics import fidelity_table

    tables = {"control_fidelity": fidelity_table(fidelities)}
    for f in fidelities:
        tables.update({f"{f.name}_per_level": f.per_level, f"{f.name}_by_group": f.by_group,
                       f"{f.name}_confusion": f.confusion})
    validity_table = pd.Series(validity, name="value", dtype=object).rename_axis("metric").to_frame()
    tables.update(validity=validity_table, status_counts=status,
                  loopability=loopability, distributions=distributions)
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
        "nomml_within1_accuracy": get("within1_accuracy"),
        "nomml_within1_accuracy_ci": get("within1_accuracy_ci", (np.nan, np.nan)),
        "nomml_spearman": get("spearman"),
        "baseline_nomml_exact_accuracy": get("baseline_exact_accuracy"),
        "baseline_nomml_exact_accuracy_ci": get("baseline_exact_accuracy_ci", (np.nan, np.nan)),
        "baseline_nomml_within1_accuracy": get("baseline_within1_accuracy"),
        "nomml_gain": get("gain"),
        "nomml_gain_ci": get("gain_ci", (np.nan, np.nan)),
        "loopability": loopability.loc["tracks", "share"],
        "loopability_ci": loopability.loc["tracks", "share_ci"],
        "file_loopability": loopability.loc["files", "share"],
        "seam_continues": loopability.loc["seam", "share"],
        **{k: validity[k] for k in ("validity", "num_generations", "num_successful_generations",
                                    "attempts_per_success", "tokens_per_loop", "seconds_per_loop")},
        "controls": {name: {k: row[k] for k in ("exact_accuracy", "exact_accuracy_ci", "within1_accuracy",
                                                 "spearman", "num_tracks")}
                     for name, row in fidelity.iterrows()},
    }
    if distributions is not None and len(distributions):
        summary["distribution_overlap"] = distributions["overlap"].to_dict()
        summary["distribution_kl"] = distributions["kl"].to_dict()
    summary["verdict"] = verdict(summary)
    return summary


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
    """``python -m mmmlib.evaluation.report merge LABEL_DIR`` or ``report EXECUTED.ipynb OUT.html``."""
    parser = argparse.ArgumentParser(prog="python -m mmmlib.evaluation.report", description=main.__doc__)
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
