"""Loopability of generated tracks: does the project's loop detector find a loop, and a seam?

- *Loopability*: share of generated tracks (and of generated files, i.e. generations
  with at least one such track) in which :func:`mmmlib.data.loops.detect_loops` finds an
  (exact) loop. When the detector cannot be imported, the ``is_loop`` column of the results
  is used instead and the seam check is left out (NaN).
- *Expressive loops*: share of generated tracks in which the expressive detector
  (:func:`mmmlib.data.expressive.detect_expressive_loops`, default mode) finds a loop: loops
  that repeat up to microtiming and dynamics, which the exact detector misses.
- *Seam check*: a loop played in a loop runs from its last bar back into its first. We
  play the segment twice and keep one segment length of it, starting one bar before
  the seam (the last bar, then the others: a rotation by one bar). The track passes
  when the detector finds a loop starting at that window's first bar, i.e. the last
  bar starts a pattern that repeats right across the seam. A window of one segment
  length cannot hold the repetition of the whole segment, which any doubled score has
  and which would make the check pass always (the detector compares only the first
  note sets after a barline). The check applies to tracks with a loop in the segment
  itself (NaN otherwise).
- *Marked-loop seam*: a loop the model marks (``Loop_Start`` ... ``Loop_End``, written by 04
  as its own MIDI file, :mod:`mmmlib.generation.marked_loops`) is one period of a loop, not
  a track holding repetitions, so the check above cannot apply as is: its window would
  hold no repetition at all. The marked loop is played twice, the same one-bar rotation
  is taken over the two plays (its last bar, then the rest), and the loop passes when the
  detector finds a loop starting at that window's first bar, i.e. across the seam. Exact
  repetition is then given; what fails are spans the detector would not take for a loop
  when looped: too few or too sparse notes, shorter than 4 or longer than 32 beats. The
  loop's length is its notes rounded up to whole bars (the file does not store its end).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmmlib.evaluation.metrics import bootstrap_mean, percentile_ci

# The marked-loop check looks for the loop's whole period starting at tick 0, where the detector's
# default beat count (duration_offset=-1, see mmmlib.data.loops) is one beat short: every one-bar
# 4/4 loop would count 3 beats, under the 4-beat minimum, and fail. Counting exactly there keeps
# them checkable.
MARKED_SEAM_OPTIONS = {"duration_offset": 0}
LOOP_COLUMNS = ["has_loop", "n_loops", "longest_loop_beats", "loop_beats", "loop_quarters", "seam_ok",
                "has_expressive_loop", "expressive_loop_beats"]


def bar_ticks(score) -> int:
    """Ticks per bar of the score's first time signature (4/4 when it has none)."""
    numerator, denominator = 4, 4
    if len(score.time_signatures):
        numerator, denominator = score.time_signatures[0].numerator, score.time_signatures[0].denominator
    return max(int(round(score.ticks_per_quarter * 4 * numerator / denominator)), 1)


def segment_ticks(score, num_bars: float | None = None) -> int:
    """Length of the generated segment: ``num_bars`` bars, else up to the bar after the last onset."""
    bar = bar_ticks(score)
    if num_bars is not None and np.isfinite(num_bars) and num_bars > 0:
        return int(round(num_bars)) * bar
    last_onset = max((int(t.notes.numpy()["time"].max()) for t in score.tracks if len(t.notes)), default=0)
    return (last_onset // bar + 1) * bar


def seam_window(score, length_ticks: int, plays: int = 1):
    """The segment played twice, cropped to ``plays`` segment lengths starting a bar before the seam.

    With one play that is the last bar followed by every other bar (a rotation by one bar);
    with two, the segment's last bar followed by the segment and all but its last bar again
    (the rotation of the segment played twice). Notes at or after ``length_ticks`` are
    dropped. Returns a modified copy of ``score``.

    :param score: tick-time score of the generated segment.
    :param length_ticks: segment length (a whole number of bars).
    :param plays: segment lengths in the window.
    """
    from symusic.core import NoteTickList

    bar = bar_ticks(score)
    total = plays * length_ticks
    cut = total - bar
    window = score.copy()
    for original, track in zip(score.tracks, window.tracks, strict=True):
        notes = original.notes.numpy()
        inside = notes["time"] < length_ticks
        time = np.concatenate([notes["time"][inside].astype(np.int64) + i * length_ticks for i in range(plays)])
        time = np.where(time >= cut, time - cut, time + bar).astype(np.int32)
        order = np.argsort(time, kind="stable")
        columns = [np.tile(notes[k][inside], plays)[order] for k in ("duration", "pitch", "velocity")]
        track.notes = NoteTickList.from_numpy(time[order], columns[0].astype(np.int32),
                                              columns[1].astype(np.int8), columns[2].astype(np.int8))
    return window


def file_loops(score, track_indices: list[int], num_bars: float | None, detect, detect_expressive=None) -> list[dict]:
    """Loop rows of the requested tracks of one generated file.

    :param detect: the loop detector, ``detect_loops(score) -> list[Loop]``.
    :param detect_expressive: the expressive detector, ``(score, tracks) -> list[ExpressiveLoop]``
        (None: not run, its columns are NaN / empty).
    :return: one dict per track: ``track_idx`` and the :data:`LOOP_COLUMNS`; ``loop_quarters``
        are the exact loops' lengths in quarter notes from their ticks (what the loop duration
        control bins), ``loop_beats`` the detector's ``duration_beats``.
    """
    loops = detect(score)
    seam = detect(seam_window(score, segment_ticks(score, num_bars)))
    expressive = detect_expressive(score, track_indices) if detect_expressive is not None else None
    rows = []
    for idx in track_indices:
        own = [lp for lp in loops if lp.track_idx == idx]
        seam_ok = any(lp.track_idx == idx and lp.start_tick == 0 for lp in seam)
        own_expressive = [lp for lp in expressive or [] if lp.track_idx == idx]
        rows.append({
            "track_idx": idx, "has_loop": bool(own), "n_loops": len(own),
            "longest_loop_beats": max((lp.duration_beats for lp in own), default=np.nan),
            "loop_beats": [float(lp.duration_beats) for lp in own],
            "loop_quarters": [(lp.end_tick - lp.start_tick) / score.ticks_per_quarter for lp in own],
            "seam_ok": float(seam_ok) if own else np.nan,
            "has_expressive_loop": float(bool(own_expressive)) if expressive is not None else np.nan,
            "expressive_loop_beats": [float(lp.duration_beats) for lp in own_expressive],
        })
    return rows


def _detectors():
    """``(detect_loops, expressive detector)``; None for one that cannot be imported."""
    try:
        from mmmlib.data.loops import detect_loops
    except ImportError:  # the loop module is built in parallel; fall back to the results' column
        return None, None
    try:
        from mmmlib.data.expressive import detect_expressive_loops
    except ImportError:
        return detect_loops, None
    return detect_loops, detect_expressive_loops  # its default mode, as 01 runs it


def _no_loops(idx: int) -> dict:
    return {"track_idx": idx, "has_loop": False, "n_loops": 0, "longest_loop_beats": np.nan, "loop_beats": [],
            "loop_quarters": [], "seam_ok": np.nan, "has_expressive_loop": np.nan, "expressive_loop_beats": []}


def track_loopability(final: pd.DataFrame, read_score) -> tuple[pd.DataFrame, str]:
    """Per final track: the :data:`LOOP_COLUMNS` (exact and expressive loops, seam check).

    :param final: final successful rows, with ``midi_file`` (resolved path) and ``track_idx``.
    :param read_score: ``path -> symusic.Score`` (tick time).
    :return: ``final`` with the loop columns added, and the source of ``has_loop``
        (``"detector"`` or ``"results column is_loop"``).
    """
    detect, detect_expressive = _detectors()
    if detect is None:
        reported = final["is_loop"].astype(str).str.strip().str.lower().isin(["true", "1", "1.0"])
        empty = {c: [[] for _ in range(len(final))] for c in ("loop_beats", "loop_quarters", "expressive_loop_beats")}
        tracks = final.assign(has_loop=reported, n_loops=np.nan, longest_loop_beats=np.nan, seam_ok=np.nan,
                              has_expressive_loop=np.nan, **empty)
        return tracks, "results column is_loop"
    rows = []
    for path, part in final.groupby("midi_file", sort=False):
        num_bars = pd.to_numeric(part.get("n_bars"), errors="coerce").max() if "n_bars" in part else None
        indices = part["track_idx"].astype(int).tolist()
        try:
            found = file_loops(read_score(path), indices, num_bars, detect, detect_expressive)
        except Exception as exc:  # an unreadable file counts as no loop, and says so
            print(f"loop detection failed on {path}: {exc}")
            found = [_no_loops(i) for i in indices]
        rows += [{"midi_file": path, **row} for row in found]
    loops = pd.DataFrame(rows, columns=["midi_file", "track_idx", *LOOP_COLUMNS])
    loops = loops.astype({"midi_file": object, "track_idx": int})  # typed even when empty
    merged = final.drop(columns=[c for c in LOOP_COLUMNS if c in final]).merge(
        loops, on=["midi_file", "track_idx"], how="left")
    merged["has_loop"] = merged["has_loop"].fillna(False).astype(bool)
    return merged, "detector"


# --------------------------------------------------------------------------- marked loops
def marked_loop_seam(loop, detect) -> bool:
    """Whether a marked loop, played twice, continues across its seam (see the module doc).

    :param loop: tick-time score of the loop file (the marked span from tick 0).
    :param detect: the loop detector, ``detect_loops(score, **options) -> list[Loop]``.
    :return: True when the detector finds a loop starting at the loop's last bar, in the
        window that runs from that bar across the seam.
    """
    window = seam_window(loop, segment_ticks(loop), plays=2)
    return any(lp.start_tick == 0 for lp in detect(window, **MARKED_SEAM_OPTIONS))


def marked_loop_seams(final: pd.DataFrame, label_dir: str | Path, read_score) -> pd.DataFrame:
    """One row per loop the final tracks mark: ``gen_id, track_idx, loop_file, seam_ok``.

    :param final: final rows with ``loop_files`` (paths relative to ``label_dir``, ``;``-separated).
    :param label_dir: the run's folder, ``{source}/{label}``.
    :param read_score: ``path -> symusic.Score`` (tick time).
    :return: ``seam_ok`` is 1.0 / 0.0, NaN for a file that cannot be read (printed); empty when
        the run marks no loops (no ``loop_files``) or the detector cannot be imported.
    """
    columns = ["gen_id", "track_idx", "loop_file", "seam_ok"]
    detect, _ = _detectors()
    if detect is None:
        return pd.DataFrame(columns=columns)
    rows = []
    files = final["loop_files"] if "loop_files" in final else pd.Series("", final.index)
    for row, names in zip(final.itertuples(index=False), files.fillna("").astype(str), strict=True):
        for name in filter(None, (n.strip() for n in names.split(";"))):
            path = Path(name) if Path(name).is_absolute() else Path(label_dir) / name
            try:
                seam_ok = float(marked_loop_seam(read_score(str(path)), detect))
            except Exception as exc:  # a missing loop file is not a failed seam: NaN, and say which
                print(f"marked loop skipped ({exc}): {path}")
                seam_ok = np.nan
            rows.append({"gen_id": row.gen_id, "track_idx": row.track_idx, "loop_file": str(path), "seam_ok": seam_ok})
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- table
LOOPABILITY_NOTES = {
    "expressive": "expressive detector not run (mmmlib.data.expressive unavailable)",
    "seam": "no track with a loop to check",
    "marked_seam": "the run marks no loops (no Loop_Start..Loop_End in the final generations: no loop_files)",
    "marked_repeat": "the run marks no loops (n_loop_markers is 0 or missing)",
}


def marked_repeats(tracks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One value per loop the tracks mark: 1.0 when 04's check found it repeating in its own track
    (the detector finds that span as a loop of the track, ``n_marked_loops_repeating``), else 0.0.

    :return: the values and the generation of each (the bootstrap's unit).
    """
    if "n_loop_markers" not in tracks or "n_marked_loops_repeating" not in tracks:
        return np.zeros(0), np.zeros(0, dtype=str)
    marked = pd.to_numeric(tracks["n_loop_markers"], errors="coerce").fillna(0).astype(int).to_numpy()
    repeating = pd.to_numeric(tracks["n_marked_loops_repeating"], errors="coerce").fillna(0).astype(int).to_numpy()
    values = np.concatenate([np.r_[np.ones(min(r, m)), np.zeros(m - min(r, m))] for m, r in zip(marked, repeating,
                                                                                               strict=True)] or [[]])
    units = np.repeat(tracks["gen_id"].astype(str).to_numpy(), marked)
    return values.astype(float), units


def loopability_table(tracks: pd.DataFrame, num_resamples: int = 1000, seed: int = 0,
                      marked: pd.DataFrame | None = None) -> pd.DataFrame:
    """Shares of tracks with an exact or expressive loop, of files with a loop, of seams that continue.

    :param tracks: output of :func:`track_loopability`.
    :param marked: output of :func:`marked_loop_seams` (None: the marked-loop row is NaN).
    :return: rows ``tracks`` (an exact loop), ``files``, ``seam``, ``expressive`` (an expressive
        loop), ``marked_seam`` (marked loops that continue across their seam) and ``marked_repeat``
        (marked loops that repeat in their own track, :func:`marked_repeats`) with ``n``,
        ``share``, ``share_ci`` and a ``note`` saying why a share is NaN.
    """
    groups = tracks["gen_id"].astype(str).to_numpy()
    files = tracks.groupby("gen_id")["has_loop"].any().astype(float)
    repeats, repeat_units = marked_repeats(tracks)
    marked = marked if marked is not None else pd.DataFrame({"gen_id": [], "seam_ok": []})
    rows = [
        ("tracks", tracks["has_loop"].to_numpy(float), groups),
        ("files", files.to_numpy(), files.index.astype(str).to_numpy()),
        ("seam", tracks["seam_ok"].to_numpy(float), groups),
        ("expressive", tracks.get("has_expressive_loop", pd.Series(np.nan, tracks.index)).to_numpy(float), groups),
        ("marked_seam", marked["seam_ok"].to_numpy(float), marked["gen_id"].astype(str).to_numpy()),
        ("marked_repeat", repeats, repeat_units),
    ]
    table = []
    for name, values, units in rows:
        known = np.isfinite(values)
        values, units = values[known], units[known]
        draws = bootstrap_mean(units, values, num_resamples, seed)
        share = float(values.mean()) if values.size else np.nan
        table.append({"unit": name, "n": int(values.size), "share": share, "share_ci": percentile_ci(draws),
                      "note": LOOPABILITY_NOTES.get(name, "no tracks") if not values.size else ""})
    return pd.DataFrame(table).set_index("unit")


def loop_lengths(tracks: pd.DataFrame, kind: str = "exact") -> pd.Series:
    """Durations in beats of every loop of ``kind`` (``exact`` or ``expressive``) detected in the tracks."""
    column = "loop_beats" if kind == "exact" else "expressive_loop_beats"
    values = tracks[column] if column in tracks else []
    return pd.Series([b for beats in values for b in beats], name="duration_beats", dtype=float)
