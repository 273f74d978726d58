from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from symusic import Note, Score, Track

from mmmlib.data import nomml_from_onsets, onset_levels, track_nomml

TPQ = 480


@pytest.mark.parametrize(
    ("tick", "level"),
    [
        (0, 0), (480, 0), (960 * 7, 0),          # on the beat
        (240, 2), (720, 2),                      # eighth (binary depth 1)
        (120, 4), (360, 4),                      # sixteenth (depth 2)
        (60, 6), (30, 8), (15, 10),              # 32nd, 64th, 128th
        (320, 1), (160, 3), (80, 5),             # ternary depths 0, 1, 2
        (40, 7), (20, 9), (10, 11),              # ternary depths 3, 4, 5
        (7, 12), (481, 12), (5, 12),             # off every grid: expressive
    ],
)
def test_onset_levels_hand_made(tick, level):
    assert onset_levels(np.array([tick]), TPQ)[0] == level


def test_binary_grid_wins_over_ternary():
    # 960 is on the quarter grid and on the triplet grid: the binary level comes first.
    assert onset_levels(np.array([960]), TPQ)[0] == 0


def test_exact_for_tpq_not_divisible_by_three():
    # tpq 100: triplet eighths fall on 200/3 ticks, never on integers except multiples of 200.
    assert list(onset_levels(np.array([200, 67, 50, 25]), 100)) == [0, 12, 2, 4]


def test_median_is_integer_part():
    # two onsets at level 0 and two at level 2: median 1.0 -> 1; three at 2 and one at 0 -> 2
    assert nomml_from_onsets(np.array([0, 240, 480, 720]), TPQ) == 1
    assert nomml_from_onsets(np.array([0, 240, 720, 1200]), TPQ) == 2
    assert nomml_from_onsets(np.array([], dtype=int), TPQ) is None


def _track(onsets: list[int]) -> Track:
    track = Track(program=0)
    for t in onsets:
        track.notes.append(Note(t, 100, 60, 90))
    return track


def test_track_nomml_on_raw_ticks():
    assert track_nomml(_track([0, 480, 960]), TPQ) == 0
    assert track_nomml(_track([3, 487, 955, 1441]), TPQ) == 12
    assert track_nomml(Track(program=0), TPQ) is None


def test_cli_prints_one_json_per_track(tmp_path):
    score = Score(TPQ)
    score.tracks.append(_track([0, 240, 480, 720, 1200, 1680]))
    score.tracks.append(Track(program=1))  # no notes: not printed
    path = tmp_path / "a.mid"
    score.dump_midi(str(path))
    done = subprocess.run([sys.executable, "-m", "mmmlib", "nomml", str(path)], capture_output=True, text=True,
                          check=True)
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"file": str(path), "track_idx": 0, "nomml": 2}]
    assert done.stderr == ""
