"""The reference set of 05, cut to the generations' length: windows at the reference loops.

Generated tracks are loops of a few bars; reference files are whole songs. Features that
grow with length (pitch range, the pitch classes met) or depend on where in a song one
looks (density: intros and outros are sparse) would compare a loop with a song. So each
reference track is compared through one *window* of the generations' length, ``num_bars``
bars of the file's time signature at the window's start:

- ``window_source = "loop"``: the window starts where one of the track's loops starts
  (``loops.parquet`` of 01, exact or expressive; one drawn with the seed when it has several);
- ``"file loop"``: the track has no loop but another track of its file does: the window
  starts at one of those (the track's part in a loop of the file);
- ``"random"``: the file has no loop at all (or ``loops.parquet`` is missing): a bar line
  drawn with the seed, among those from which the window fits in the file.

Each window's features are those of :func:`mmmlib.evaluation.distributions.track_features`
on the notes starting inside the window, with the window's length as the piece length:
the same as for a generated clip of the same notes and length. The draws depend on the
seed and the file's md5 only, so adding files does not move the others' windows.

:func:`reference_loop_lengths` gives the reference loops' durations for the loop-length
histogram.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mmmlib.evaluation.distributions import choose_reference_files, read_reference_scores, track_features

if TYPE_CHECKING:
    from symusic import Score, Track

WINDOW_SOURCES = ("loop", "file loop", "random")


def bar_ticks_at(score: Score, tick: int) -> int:
    """Ticks per bar of the time signature in force at ``tick`` (4/4 before any or without one)."""
    numerator, denominator = 4, 4
    for ts in score.time_signatures:
        if ts.time > tick:
            break
        numerator, denominator = ts.numerator, ts.denominator
    return max(int(round(score.ticks_per_quarter * 4 * numerator / denominator)), 1)


def track_window(track: Track, start_tick: int, length_ticks: int) -> Track:
    """A copy of ``track`` holding the notes that start in ``[start_tick, start_tick + length_ticks)``,
    moved to start at tick 0 (durations kept, as a generated clip keeps them)."""
    from symusic.core import NoteTickList

    notes = track.notes.numpy()
    inside = (notes["time"] >= start_tick) & (notes["time"] < start_tick + length_ticks)
    window = track.copy()
    window.notes = NoteTickList.from_numpy(
        (notes["time"][inside] - start_tick).astype(np.int32), notes["duration"][inside].astype(np.int32),
        notes["pitch"][inside].astype(np.int8), notes["velocity"][inside].astype(np.int8))
    return window


def window_starts(score: Score, md5: str, loops: pd.DataFrame, num_bars: int, seed: int) -> list[tuple[int, str]]:
    """Start tick and ``window_source`` of the window of each track (see the module doc).

    :param loops: the file's rows of ``loops.parquet`` (``track_idx``, ``start_tick``).
    """
    rng = np.random.default_rng([seed, zlib.crc32(md5.encode())])
    file_starts = sorted(loops["start_tick"].astype(int).unique().tolist())
    if not file_starts:
        bars = _bar_lines(score)
        end = int(score.end())
        fits = [b for b in bars if b + num_bars * bar_ticks_at(score, b) <= end] or bars[:1] or [0]
        start = int(fits[rng.integers(len(fits))])
        return [(start, "random")] * len(score.tracks)
    out = []
    for idx in range(len(score.tracks)):
        own = sorted(loops.loc[loops["track_idx"] == idx, "start_tick"].astype(int).tolist())
        starts, source = (own, "loop") if own else (file_starts, "file loop")
        out.append((int(starts[rng.integers(len(starts))]), source))
    return out


def _bar_lines(score: Score) -> list[int]:
    """Bar line ticks up to the score's end, following its time signatures."""
    ticks, tick, end = [], 0, max(int(score.end()), 1)
    while tick < end:
        ticks.append(tick)
        tick += bar_ticks_at(score, tick)
    return ticks


def read_loops(reference_dir: str | Path) -> pd.DataFrame:
    """``loops.parquet`` of a 01 output folder; an empty frame (and a printed note) when it is missing."""
    path = Path(reference_dir) / "loops.parquet"
    if not path.is_file():
        print(f"no {path}: no reference loops (reference windows start at random bars)")
        return pd.DataFrame(columns=["md5", "track_idx", "start_tick", "end_tick", "duration_beats", "kind"])
    return pd.read_parquet(path)


def reference_windows(reference_dir: str | Path, num_bars: int, split: str = "test", max_files: int = 200,
                      seed: int = 0) -> pd.DataFrame:
    """Features of one ``num_bars``-bar window per track of the reference files (see the module doc).

    :param reference_dir: a data-prep output folder with ``files.parquet`` (and ``loops.parquet``).
    :param num_bars: window length in bars of each file's time signature: the generations' ``n_bars``.
    :param split: ``train``, ``valid`` or ``test`` (all files when the split is empty).
    :param max_files: files read at most (drawn with ``seed``).
    :param seed: seed of the file sample and of the window draws.
    :return: one row per track: ``unit`` (md5), ``track_idx``, ``is_drum``, ``window_source``,
        ``start_tick``, ``length_ticks`` and the features.
    """
    loops = read_loops(reference_dir)
    by_file = dict(tuple(loops.groupby("md5"))) if len(loops) else {}
    no_loops = loops.iloc[:0]
    rows: list[dict] = []
    chosen = choose_reference_files(reference_dir, split, max_files, seed)
    for record, score in read_reference_scores(reference_dir, chosen):
        md5 = str(record.md5)
        starts = window_starts(score, md5, by_file.get(md5, no_loops), num_bars, seed)
        for idx, (track, (start, source)) in enumerate(zip(score.tracks, starts, strict=True)):
            length = num_bars * bar_ticks_at(score, start)
            rows.append({"unit": md5, "track_idx": idx, "is_drum": bool(track.is_drum), "window_source": source,
                         "start_tick": start, "length_ticks": length,
                         **track_features(track_window(track, start, length), score.ticks_per_quarter, length)})
    return pd.DataFrame(rows)


def reference_loop_lengths(reference_dir: str | Path, split: str = "test", kind: str | None = None) -> pd.Series:
    """Durations (beats, as the detectors count them) of the loops of a split's files.

    :param reference_dir: a data-prep output folder (``files.parquet``, ``loops.parquet``);
        "" gives no loops.
    :param split: the split (all files when it is empty, as :func:`reference_windows` falls back).
    :param kind: ``exact`` or ``expressive`` (None: both).
    :return: ``duration_beats`` of each loop.
    """
    if not reference_dir:
        return pd.Series(dtype=float, name="duration_beats")
    loops = read_loops(reference_dir)
    files = choose_reference_files(reference_dir, split, max_files=sys.maxsize)  # every file: only parquet is read
    keep = loops["md5"].isin(files["md5"])
    if kind is not None:
        keep &= loops["kind"] == kind
    return loops.loc[keep, "duration_beats"].astype(float).reset_index(drop=True)
