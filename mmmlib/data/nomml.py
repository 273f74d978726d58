"""Note Onset Median Metric Level (NOMML), as defined for GigaMIDI.

For each note onset (in the file's raw ticks, before any quantization) the metric
level is the first depth ``i`` (0 <= i < 6) at which the onset falls on the binary
grid of period ``tpq / 2**i`` (level ``2*i``), else the first depth at which it
falls on the ternary grid of period ``2*tpq / (3 * 2**i)`` (level ``2*i + 1``),
else 12. A track's NOMML is the integer part of the median level of its onsets.

Level 0 means every onset is on a beat, 2 on eighths, 4 on sixteenths, odd levels
are triplet grids, and 12 means the onsets are off every grid down to 1/128 notes:
an expressive (performed, unquantized) track.

We test grid membership with integer arithmetic (``tick * 2**i % tpq == 0`` and
``tick * 3 * 2**i % (2*tpq) == 0``) rather than float modulo: it is exact for every
ticks-per-quarter, including those not divisible by 3 or by 32.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from symusic import Score, Track

MAX_DEPTH = 6
NUM_LEVELS = 2 * MAX_DEPTH + 1  # 0..12
EXPRESSIVE_LEVEL = 2 * MAX_DEPTH


def near_levels(requested: np.ndarray | float, measured: np.ndarray | float) -> np.ndarray:
    """Whether a measured NOMML level is musically near the requested one (elementwise, broadcasts).

    Levels interleave two grid families, so ``|measured - requested| <= 1`` would call 1
    (quarter-note triplets) a neighbour of 2 (eighths). *Near* means: the same feel (both
    binary grids, both ternary grids, or both expressive) and at most one subdivision apart
    (depths ``level // 2`` within 1, a grid twice as fine or twice as coarse). So 2 is near
    0, 2 and 4; 3 is near 1, 3 and 5; 12 only near 12. A missing measurement (NaN) is never near.

    :param requested: requested levels (0-12).
    :param measured: measured levels (0-12, NaN for none).
    :return: a boolean array of the broadcast shape.
    """
    req, meas = np.asarray(requested, dtype=float), np.asarray(measured, dtype=float)
    known = np.isfinite(req) & np.isfinite(meas)
    req, meas = np.where(known, req, 0), np.where(known, meas, 0)
    # family: 0 binary, 1 ternary, 2 expressive (level 12 is even but on no grid)
    family_req = np.where(req == EXPRESSIVE_LEVEL, 2, req % 2)
    family_meas = np.where(meas == EXPRESSIVE_LEVEL, 2, meas % 2)
    return known & (family_req == family_meas) & (np.abs(req // 2 - meas // 2) <= 1)


def onset_levels(onset_ticks: np.ndarray, tpq: int, max_depth: int = MAX_DEPTH) -> np.ndarray:
    """Metric level (0..2*max_depth) of each onset tick.

    :param onset_ticks: integer onset times in ticks.
    :param tpq: ticks per quarter note of the file.
    :param max_depth: number of binary/ternary subdivisions tried.
    :return: int array of the same length with one level per onset.
    """
    ticks = np.asarray(onset_ticks, dtype=np.int64)
    levels = np.full(ticks.shape, 2 * max_depth, dtype=np.int64)
    undecided = np.ones(ticks.shape, dtype=bool)
    for depth in range(max_depth):  # binary grids first, coarsest first
        hit = undecided & ((ticks * (1 << depth)) % tpq == 0)
        levels[hit] = 2 * depth
        undecided &= ~hit
    for depth in range(max_depth):  # then ternary grids
        hit = undecided & ((ticks * 3 * (1 << depth)) % (2 * tpq) == 0)
        levels[hit] = 2 * depth + 1
        undecided &= ~hit
    return levels


def nomml_from_onsets(onset_ticks: np.ndarray, tpq: int) -> int | None:
    """NOMML of a set of onsets: ``int(median(levels))``, None when there are none."""
    ticks = np.asarray(onset_ticks)
    if ticks.size == 0:
        return None
    return int(np.median(onset_levels(ticks, tpq)))


def track_nomml(track: Track, tpq: int) -> int | None:
    """NOMML of a symusic track (tick time), None for a track without notes.

    :param track: a ``symusic`` track read in ticks (``Score(path)``, not quantized).
    :param tpq: the score's ticks per quarter (``score.ticks_per_quarter``).
    """
    if len(track.notes) == 0:
        return None
    onsets = track.notes.numpy()["time"]
    return nomml_from_onsets(onsets, tpq)


def score_nomml(score: Score) -> list[int | None]:
    """NOMML of every track of a tick-time score (None for empty tracks)."""
    return [track_nomml(track, score.ticks_per_quarter) for track in score.tracks]


def main(argv: list[str] | None = None) -> int:
    """``python -m mmmlib nomml FILE...``: one JSON object per track that has notes, on stdout.

    Each line is ``{"file", "track_idx", "nomml"}``; a file that cannot be read is named
    on stderr and skipped.

    :param argv: command-line arguments (``sys.argv[1:]`` when None).
    :return: the exit status: 0, or 1 when some file could not be read.
    """
    from mmmlib.core.midi import read_midi_files

    parser = argparse.ArgumentParser(
        prog="mmmlib nomml", description="NOMML (note onset median metric level, 0-12) of every track with notes."
    )
    parser.add_argument("files", nargs="+", help="MIDI files to analyse")
    args = parser.parse_args(argv)
    failed: list[str] = []
    for path, score in read_midi_files(args.files, failed):
        for track_idx, value in enumerate(score_nomml(score)):
            if value is not None:
                print(json.dumps({"file": path, "track_idx": track_idx, "nomml": value}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
