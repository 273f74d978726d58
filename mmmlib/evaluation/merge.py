"""Merge the per-rank results files of a generation run into one ``RESULTS.csv``.

Safe to run while ranks still write (a truncated last line is left out) and to rerun
(the output is written to a temporary file, then renamed)::

    python -m mmmlib evaluate merge runs/demo/generate/LABEL
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd

from mmmlib.generation.results import KEY_COLUMNS, REQUIRED_COLUMNS, RESULT_COLUMNS, typed


class MergeWarning(UserWarning):
    """A results file (named in the message) was skipped or partly skipped."""


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
