"""Loopability of generated tracks: does the project's loop detector find a loop, and a seam?

- *Loopability*: share of generated tracks (and of generated files, i.e. generations
  with at least one such track) in which :func:`mmmlib.data.loops.detect_loops` finds a
  loop. When the detector cannot be imported, the ``is_loop`` column of the results is
  used instead and the seam check is left out (NaN).
- *Seam check*: a loop played in a loop runs from its last bar back into its first. We
  play the segment twice and keep one segment length of it, starting one bar before
  the seam (the last bar, then the others: a rotation by one bar). The track passes
  when the detector finds a loop starting at that window's first bar, i.e. the last
  bar starts a pattern that repeats right across the seam. A window of one segment
  length cannot hold the repetition of the whole segment, which any doubled score has
  and which would make the check pass always (the detector compares only the first
  note sets after a barline). The check applies to tracks with a loop in the segment
  itself (NaN otherwise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmmlib.evaluation.metrics import bootstrap_mean, percentile_ci


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


def seam_window(score, length_ticks: int):
    """The segment played twice, cropped to one segment length starting a bar before the seam.

    That is the last bar followed by every other bar (a rotation by one bar); notes at or
    after ``length_ticks`` are dropped. Returns a modified copy of ``score``.

    :param score: tick-time score of the generated segment.
    :param length_ticks: segment length (a whole number of bars).
    """
    from symusic.core import NoteTickList

    bar = bar_ticks(score)
    cut = length_ticks - bar
    window = score.copy()
    for original, track in zip(score.tracks, window.tracks, strict=True):
        notes = original.notes.numpy()
        inside = notes["time"] < length_ticks
        time = notes["time"][inside].astype(np.int64)
        time = np.where(time >= cut, time - cut, time + bar).astype(np.int32)
        order = np.argsort(time, kind="stable")
        columns = [notes[k][inside][order] for k in ("duration", "pitch", "velocity")]
        track.notes = NoteTickList.from_numpy(time[order], columns[0].astype(np.int32),
                                              columns[1].astype(np.int8), columns[2].astype(np.int8))
    return window


def file_loops(score, track_indices: list[int], num_bars: float | None, detect) -> list[dict]:
    """Loop rows of the requested tracks of one generated file.

    :param detect: the loop detector, ``detect_loops(score) -> list[Loop]``.
    :return: one dict per track: ``track_idx, has_loop, n_loops, longest_loop_beats, seam_ok``.
    """
    loops = detect(score)
    seam = detect(seam_window(score, segment_ticks(score, num_bars)))
    rows = []
    for idx in track_indices:
        own = [lp for lp in loops if lp.track_idx == idx]
        seam_ok = any(lp.track_idx == idx and lp.start_tick == 0 for lp in seam)
        rows.append({
            "track_idx": idx, "has_loop": bool(own), "n_loops": len(own),
            "longest_loop_beats": max((lp.duration_beats for lp in own), default=np.nan),
            "loop_beats": [float(lp.duration_beats) for lp in own],
            "seam_ok": float(seam_ok) if own else np.nan,
        })
    return rows


def _detector():
    try:
        from mmmlib.data.loops import detect_loops
    except ImportError:  # the loop module is built in parallel; fall back to the results' column
        return None
    return detect_loops


def track_loopability(final: pd.DataFrame, read_score) -> tuple[pd.DataFrame, str]:
    """Per final track: ``has_loop``, ``n_loops``, ``longest_loop_beats``, ``loop_beats``, ``seam_ok``.

    :param final: final successful rows, with ``midi_file`` (resolved path) and ``track_idx``.
    :param read_score: ``path -> symusic.Score`` (tick time).
    :return: ``final`` with the loop columns added, and the source of ``has_loop``
        (``"detector"`` or ``"results column is_loop"``).
    """
    detect = _detector()
    if detect is None:
        reported = final["is_loop"].astype(str).str.strip().str.lower().isin(["true", "1", "1.0"])
        tracks = final.assign(has_loop=reported, n_loops=np.nan, longest_loop_beats=np.nan,
                              loop_beats=[[] for _ in range(len(final))], seam_ok=np.nan)
        return tracks, "results column is_loop"
    rows = []
    for path, part in final.groupby("midi_file", sort=False):
        num_bars = pd.to_numeric(part.get("n_bars"), errors="coerce").max() if "n_bars" in part else None
        indices = part["track_idx"].astype(int).tolist()
        try:
            found = file_loops(read_score(path), indices, num_bars, detect)
        except Exception as exc:  # an unreadable file counts as no loop, and says so
            print(f"loop detection failed on {path}: {exc}")
            found = [{"track_idx": i, "has_loop": False, "n_loops": 0, "longest_loop_beats": np.nan,
                      "loop_beats": [], "seam_ok": np.nan} for i in indices]
        rows += [{"midi_file": path, **row} for row in found]
    loops = pd.DataFrame(rows, columns=["midi_file", "track_idx", "has_loop", "n_loops",
                                        "longest_loop_beats", "loop_beats", "seam_ok"])
    loops = loops.astype({"midi_file": object, "track_idx": int})  # typed even when empty
    merged = final.drop(columns=[c for c in loops.columns[2:] if c in final]).merge(
        loops, on=["midi_file", "track_idx"], how="left")
    merged["has_loop"] = merged["has_loop"].fillna(False).astype(bool)
    return merged, "detector"


def loopability_table(tracks: pd.DataFrame, num_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Shares of tracks with a loop, files with a loop, and seams that continue, with CIs.

    :param tracks: output of :func:`track_loopability`.
    :return: rows ``tracks``, ``files``, ``seam`` with ``share``, ``share_ci``, ``n``.
    """
    groups = tracks["gen_id"].astype(str).to_numpy()
    has_loop = tracks["has_loop"].to_numpy(float)
    files = tracks.groupby("gen_id")["has_loop"].any().astype(float)
    seam = tracks["seam_ok"].to_numpy(float)
    seam_known = np.isfinite(seam)
    rows = [
        ("tracks", has_loop, groups),
        ("files", files.to_numpy(), files.index.astype(str).to_numpy()),
        ("seam", seam[seam_known], groups[seam_known]),
    ]
    table = []
    for name, values, units in rows:
        draws = bootstrap_mean(units, values, num_resamples, seed)
        share = float(values.mean()) if values.size else np.nan
        table.append({"unit": name, "n": int(values.size), "share": share, "share_ci": percentile_ci(draws)})
    return pd.DataFrame(table).set_index("unit")


def loop_lengths(tracks: pd.DataFrame) -> pd.Series:
    """Durations in beats of every loop detected in the generated tracks."""
    return pd.Series([b for beats in tracks["loop_beats"] for b in beats], name="duration_beats", dtype=float)
