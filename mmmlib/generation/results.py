"""The results schema of a generation run: one home for what 04 writes and 05 reads.

``{output_folder}/{label}/RESULTS_{rank}.csv`` holds one row per generated track and
attempt (:data:`RESULT_COLUMNS`, plus optional ``<control>_requested/_measured`` pairs).
A generation may take several attempts (a failed check retries with a new seed); the
*final* output of a generation is its last attempt whose rows are all ok
(:func:`final_generations`), and :func:`control_accuracy` is the requested-vs-measured
table that both 04 (quick look) and 05 (with confidence intervals) show.

Crash safety: a generation's rows (all its attempts) are appended in one write, flushed
and fsynced; each row says how many rows its generation wrote (``gen_rows``), so
:func:`resume_results` can cut off a generation that a kill interrupted.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmmlib.data.nomml import near_levels

RESULT_COLUMNS = ["gen_id", "label", "rank", "attempt", "seed", "midi_path", "track_idx", "program", "is_drum",
                  "nomml_requested", "nomml_measured", "loop_count_requested", "n_loops_detected", "is_loop",
                  "n_bars", "n_notes", "n_tokens", "seconds", "status", "reason",
                  "loop_duration_bin_requested", "time_signature", "tempo", "num_errors",
                  "n_loop_markers", "n_marked_loops_repeating", "loop_files", "gen_rows"]
NO_CONTROL = -1  # the requested value of a control that was not given
# Without these a file cannot be merged: they form the key and say whether a row succeeded.
KEY_COLUMNS = ["gen_id", "attempt", "track_idx"]
REQUIRED_COLUMNS = [*KEY_COLUMNS, "status"]
TEXT_COLUMNS = {"gen_id", "label", "midi_path", "status", "reason", "is_drum", "is_loop", "loop_files"}



def rows_text(rows: Sequence[dict[str, Any]], header: bool = False) -> str:
    """Result rows as CSV text in :data:`RESULT_COLUMNS` order (with the header line when ``header``)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def append_durably(path: Path, text: str) -> None:
    """Append ``text`` in one write, then flush and fsync."""
    with open(path, "a", encoding="utf-8", newline="") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def resume_results(path: Path) -> set[str]:
    """Prepare ``RESULTS_{rank}.csv`` for appending; return the finished gen_ids.

    A truncated last line, and the rows of a generation that did not write all of its
    ``gen_rows`` rows, are cut off the file (they can only be at its end).
    """
    if not path.exists() or path.stat().st_size == 0:
        append_durably(path, rows_text([], header=True))
        return set()
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]  # a line without its newline was being written
    lines = data.decode("utf-8").splitlines(keepends=True)
    if not lines or next(csv.reader([lines[0]])) != RESULT_COLUMNS:
        if lines:
            raise ValueError(f"{path} has other columns than {RESULT_COLUMNS}: use another label")
        path.write_text(rows_text([], header=True))
        return set()
    rows = list(csv.DictReader(io.StringIO("".join(lines))))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["gen_id"]] = counts.get(row["gen_id"], 0) + 1
    keep = len(rows)
    while keep and counts[rows[keep - 1]["gen_id"]] != int(rows[keep - 1]["gen_rows"] or -1):
        keep -= 1  # rows of an incomplete generation (the last one written)
    body = "".join(lines[: 1 + keep])
    if body.encode("utf-8") != path.read_bytes():
        with open(path, "r+b") as out:
            out.truncate(len(body.encode("utf-8")))
            out.flush()
            os.fsync(out.fileno())
    return {row["gen_id"] for row in rows[:keep]}


def read_results(path: Path) -> pd.DataFrame:
    """Rows of a results file (complete lines only)."""
    text = path.read_text(encoding="utf-8")
    text = text[: text.rfind("\n") + 1]
    return pd.read_csv(io.StringIO(text)) if text else pd.DataFrame(columns=RESULT_COLUMNS)


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




def last_attempts(results: pd.DataFrame) -> pd.DataFrame:
    """Rows of each generation's last attempt, whether it passed or not (its final status)."""
    attempt = pd.to_numeric(results["attempt"], errors="coerce").fillna(0)
    last = attempt.groupby(results["gen_id"]).transform("max")
    return results[attempt == last].reset_index(drop=True)


def near_hits(name: str, requested: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Whether each measured value is *near* its request (broadcasts; NaN is never near).

    For NOMML, the musical neighbourhood of :func:`mmmlib.data.nomml.near_levels` (same
    binary/ternary/expressive feel, at most one subdivision apart); for the ordinal
    controls (loop count, duration bins) one step either way.
    """
    requested, measured = np.asarray(requested, dtype=float), np.asarray(measured, dtype=float)
    if name == "nomml":
        return near_levels(requested, measured)
    return np.isfinite(measured) & (np.abs(measured - requested) <= 1)


def failed_generations(results: pd.DataFrame) -> pd.DataFrame:
    """Rows of the last attempt of each generation that never passed its checks.

    They belong in an accuracy's denominator: :func:`scored_generations` adds them to the
    final generations as misses, so failing is never a way to leave the sample.
    """
    ok = results["status"].astype(str).str.strip().str.lower().eq("ok")
    attempt_ok = ok.groupby([results["gen_id"], results["attempt"]]).transform("all")
    passed = set(results.loc[attempt_ok, "gen_id"])
    failed = last_attempts(results[~results["gen_id"].isin(passed)])
    return failed[failed["track_idx"].notna()].reset_index(drop=True)


def scored_generations(results: pd.DataFrame, label_dir: str | Path) -> pd.DataFrame:
    """What control accuracy is computed on: the final generations plus the failed ones as misses.

    A failed generation's rows keep their requests and lose their measurements (every
    ``*_measured`` column and ``n_loops_detected`` set to NaN), so every accuracy counts
    them as misses; the column ``passed`` says which rows they are.

    :param results: every row of a run (all attempts).
    :param label_dir: the run's folder (for :func:`final_generations`).
    """
    final = final_generations(results, label_dir).assign(passed=True)
    failed = failed_generations(results).assign(passed=False, midi_file="")
    if failed.empty:
        return final
    measured = [c for c in failed.columns if c.endswith("_measured") or c == "n_loops_detected"]
    failed[measured] = np.nan
    failed["track_idx"] = failed["track_idx"].astype(int)
    return pd.concat([final, failed], ignore_index=True)


def control_accuracy(final: pd.DataFrame, name: str = "nomml", measured_column: str | None = None) -> pd.DataFrame:
    """Requested vs measured value of one control, per requested level.

    The point estimates of control fidelity: 04 shows this table as a quick look and 05
    adds bootstrap intervals and the no-control baseline to the same numbers. Tracks that
    did not request the control (:data:`NO_CONTROL`) are left out; a track without a
    measurement counts as a miss.

    :param final: rows of the final generations (:func:`final_generations`).
    :param name: the control, e.g. ``"nomml"`` (columns ``nomml_requested`` / ``nomml_measured``).
    :param measured_column: the measured column when it is not ``<name>_measured``.
    :return: one row per requested level (index ``level``): ``num_tracks``, ``measured_mean``,
        ``exact_accuracy``, ``near_accuracy`` (see :func:`near_hits`).
    """
    requested = pd.to_numeric(final[f"{name}_requested"], errors="coerce")
    measured = pd.to_numeric(final[measured_column or f"{name}_measured"], errors="coerce")
    keep = requested.notna() & (requested != NO_CONTROL)
    req, meas = requested[keep].to_numpy(float), measured[keep].to_numpy(float)
    known = np.isfinite(meas)
    table = pd.DataFrame({
        "level": req,
        "measured": meas,
        "exact_accuracy": np.where(known, meas == req, False).astype(float),
        "near_accuracy": near_hits(name, req, meas).astype(float),
    })
    out = table.groupby("level").agg(num_tracks=("level", "size"), measured_mean=("measured", "mean"),
                                     exact_accuracy=("exact_accuracy", "mean"),
                                     near_accuracy=("near_accuracy", "mean"))
    out.index = [int(v) if float(v).is_integer() else v for v in out.index]
    out.index.name = "level"
    return out
