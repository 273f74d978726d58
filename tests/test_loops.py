"""mmmlib.data.loops must find exactly the loops of the GigaMIDI detector (tests/loops_oracle.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from symusic import Note, Score, TimeSignature, Track

from mmmlib.core.errors import ConfigError
from mmmlib.data import Loop, LoopOptions, bars_and_beats, detect_loops, detect_track_loops
from mmmlib.data.loops import main
from tests import loops_oracle

REAL_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "gigamidi-tests"
# Sum over tracks of notes^2 under which the O(n^2) oracle runs in about a second or less:
# 22 of the 30 real files, every one that has a loop among them (~7 s in all). The 8 long
# piano performances left (Maestro_2, _4 to _10: ~190 s of oracle) are compared in the slow test.
FAST_ORACLE_COST = 16_000_000
# Loops per real file (default options) as the oracle, tests/loops_oracle.py, finds them;
# files not listed have none. benchmarks/results/bench_loops_gigamidi-tests.json records the
# same counts from a run of the oracle on all 30 files. Each oracle test below checks its
# file's count against the oracle's own output, so a change in both detectors at once
# (a new miditok moving bars, say) cannot pass as "still equal".
ORACLE_LOOP_COUNTS = {
    "6354774_Macabre Waltz.mid": 1, "Aicha.mid": 31, "All The Small Things.mid": 25, "Funkytown.mid": 13,
    "Girls Just Want to Have Fun.mid": 21, "I Gotta Feeling.mid": 28, "In Too Deep.mid": 27,
    "Les Yeux Revolvers.mid": 16, "Mr. Blue Sky.mid": 16, "POP909_008.mid": 2, "POP909_010.mid": 5,
    "POP909_022.mid": 13, "Shut Up.mid": 14, "What a Fool Believes.mid": 16,
    "d6caebd1964d9e4a3c5ea59525230e2a.mid": 12, "d8faddb8596fff7abb24d78666f73e4e.mid": 33,
    "test_midi.mid": 6,
}


def make_score(tracks: list[list[tuple[int, int, int]]], time_sigs=((0, 4, 4),), tpq: int = 4) -> Score:
    """A tick score with one track per list of (start, duration, pitch) notes, kept in order."""
    score = Score(tpq)
    for tick, numerator, denominator in time_sigs:
        score.time_signatures.append(TimeSignature(tick, numerator, denominator))
    for i, notes in enumerate(tracks):
        track = Track(f"t{i}", 0, False)
        for start, duration, pitch in notes:
            track.notes.append(Note(start, duration, pitch, 90))
        score.tracks.append(track)
    return score


def repeat_bars(bars: list[list[tuple[int, int, int]]], order: list[int], bar_ticks: int):
    """Notes of the bar patterns ``bars`` played in ``order``, one bar after the other."""
    return [(k * bar_ticks + start, duration, pitch)
            for k, which in enumerate(order) for start, duration, pitch in bars[which]]


def assert_same_as_oracle(score: Score, **options) -> list[Loop]:
    fast = detect_loops(score, **options)
    assert fast == loops_oracle.detect_loops(score, **options)
    return fast


RIFF = [(0, 2, 60), (2, 2, 62), (4, 1, 64), (5, 1, 65), (6, 2, 67), (8, 4, 64), (12, 2, 62), (14, 2, 60)]


@pytest.mark.parametrize("duration_offset", [-1, 0])
def test_one_bar_riff_repeated(duration_offset):
    score = make_score([repeat_bars([RIFF], [0] * 8, 16)])
    loops = assert_same_as_oracle(score, duration_offset=duration_offset)
    # the reference's beat count misses one beat for spans starting on the very first beat
    # with the later convention (-1), and matches loop 0's start: longer copies are dropped
    if duration_offset == -1:
        assert loops == [Loop(0, 0, 32, 7.0, 16 / 7.0)]
    else:
        assert loops == [Loop(0, 0, 16, 4.0, 8 / 4.0)]


def test_two_bar_riff_after_intro():
    intro = [(0, 8, 48), (8, 8, 50)]
    answer = [(0, 4, 67), (4, 4, 65), (8, 2, 64), (10, 2, 62), (12, 4, 60)]
    score = make_score([repeat_bars([intro, RIFF, answer], [0, 1, 2, 1, 2, 1, 2, 1, 2], 16)])
    loops = assert_same_as_oracle(score)
    assert Loop(0, 16, 48, 8.0, 13 / 8.0) in loops  # two bars from bar 1: exact beat count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_long_track_of_few_bar_patterns(seed, monkeypatch):
    # many candidates per duration: exercises the sub-loop chains and loop replacement;
    # a tiny block size also runs the blocked barline pairing
    monkeypatch.setattr("mmmlib.data.loops._PAIR_BLOCK_CELLS", 16)
    rng = random.Random(seed)
    patterns = [RIFF, RIFF[::2], [(0, 4, 36), (8, 4, 38)], []]
    order = [rng.choice([0, 0, 1, 2, 3]) for _ in range(40)]
    loops = assert_same_as_oracle(make_score([repeat_bars(patterns, order, 16)]))
    assert loops


def test_random_track_has_no_loop():
    rng = random.Random(3)
    notes = [(t, rng.choice([1, 2, 3]), rng.randrange(40, 90)) for t in range(0, 256, 2)]
    assert assert_same_as_oracle(make_score([notes])) == []


def test_track_with_few_notes_is_skipped():
    score = make_score([repeat_bars([[(0, 4, 60)]], [0] * 4, 16), repeat_bars([RIFF], [0] * 8, 16)])
    assert {loop.track_idx for loop in assert_same_as_oracle(score)} == {1}


@pytest.mark.parametrize(("numerator", "denominator", "bar_ticks"), [(3, 4, 12), (6, 8, 12)])
def test_other_time_signatures(numerator, denominator, bar_ticks):
    waltz = [(0, 4, 48), (4, 2, 55), (6, 2, 59), (8, 4, 55)]
    other = [(0, 6, 50), (6, 2, 57), (8, 4, 60)]
    score = make_score([repeat_bars([waltz, other], [0, 1] * 6, bar_ticks)],
                       time_sigs=[(0, numerator, denominator)])
    loops = assert_same_as_oracle(score)
    assert loops and all(4 <= loop.duration_beats <= 32 for loop in loops)


def test_time_signature_change_and_no_time_signature():
    notes = repeat_bars([RIFF, RIFF[:4]], [0, 1, 0, 1, 0, 1, 0, 1, 0, 1], 16)
    assert_same_as_oracle(make_score([notes], time_sigs=[(0, 4, 4), (64, 3, 4)]))
    bare = make_score([notes], time_sigs=[])
    assert assert_same_as_oracle(bare) == assert_same_as_oracle(make_score([notes]))
    assert len(bare.time_signatures) == 0  # the caller's score is not modified


def test_empty_scores():
    assert assert_same_as_oracle(Score(480)) == []
    assert assert_same_as_oracle(make_score([[]])) == []


def test_end_off_the_beat_grid_is_skipped():
    # miditok's bars always fall on beats; a caller's own grid may not: no crash, no loop
    track = make_score([repeat_bars([RIFF], [0] * 8, 16)]).tracks[0]
    assert detect_track_loops(track, np.arange(0, 128, 16), np.arange(1, 128, 4)) == []


def test_options_are_checked():
    with pytest.raises(TypeError):
        detect_loops(Score(480), min_rep_note=3)
    with pytest.raises(ConfigError) as info:
        LoopOptions(duration_offset=0.5)
    assert info.value.setting == "duration_offset"


@st.composite
def looping_scores(draw) -> Score:
    """Small tracks built from 1-3 bar patterns over tiny alphabets, so repetitions happen."""
    numerator, denominator = draw(st.sampled_from([(4, 4), (3, 4), (6, 8), (2, 4), (5, 4)]))
    bar_ticks = numerator * 16 // denominator  # tpq = 4
    note = st.tuples(st.integers(0, bar_ticks - 1), st.sampled_from([0, 1, 2, 4]), st.sampled_from([60, 62, 64]))
    bar = st.lists(note, min_size=0, max_size=6).map(sorted)
    patterns = draw(st.lists(bar, min_size=1, max_size=3))
    order = draw(st.lists(st.integers(0, len(patterns) - 1), min_size=1, max_size=14))
    notes = repeat_bars(patterns, order, bar_ticks)
    if draw(st.booleans()):  # chords: the same (start, duration) again with another pitch
        notes = [n for start, dur, pitch in notes for n in [(start, dur, pitch), (start, dur, pitch + 7)]]
    if draw(st.integers(0, 4)) == 0:  # unsorted notes: sets still group consecutive notes only
        draw(st.randoms()).shuffle(notes)
    time_sigs = [(0, numerator, denominator)] if draw(st.booleans()) else []
    if time_sigs and draw(st.booleans()):  # a change of time signature somewhere
        time_sigs.append((draw(st.integers(1, len(order))) * bar_ticks, 3, 4))
    return make_score([notes], time_sigs=time_sigs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(score=looping_scores(), duration_offset=st.sampled_from([-1, 0]))
def test_random_tracks_match_oracle(score, duration_offset):
    assert_same_as_oracle(score, duration_offset=duration_offset)


def oracle_cost(path: Path) -> int:
    return sum(len(track.notes) ** 2 for track in Score(path).tracks)


def real_files() -> list[Path]:
    return sorted(REAL_CORPUS.glob("*.mid")) if REAL_CORPUS.is_dir() else []


def real_file_params(oracle_is_fast: bool | None) -> list:
    """The real files as test parameters: all (None), or those the oracle checks quickly or not."""
    files = real_files()
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"real corpus not found at {REAL_CORPUS}"))]
    return [pytest.param(p, id=p.name) for p in files
            if oracle_is_fast is None or (oracle_cost(p) <= FAST_ORACLE_COST) == oracle_is_fast]


@pytest.mark.parametrize("path", real_file_params(oracle_is_fast=True))
def test_real_files_match_oracle(path):
    loops = assert_same_as_oracle(Score(path))
    assert len(loops) == ORACLE_LOOP_COUNTS.get(path.name, 0)


@pytest.mark.parametrize("path", real_file_params(oracle_is_fast=False))
def test_long_real_files_have_the_oracle_count(path):
    # the oracle needs ~190 s for these: the default run checks the count it found
    assert len(detect_loops(Score(path))) == ORACLE_LOOP_COUNTS.get(path.name, 0)


@pytest.mark.slow
@pytest.mark.parametrize("path", real_file_params(oracle_is_fast=None))
def test_all_real_files_match_oracle(path):
    score = Score(path)
    assert len(assert_same_as_oracle(score)) == ORACLE_LOOP_COUNTS.get(path.name, 0)
    assert_same_as_oracle(score, duration_offset=0)


def test_real_bars_fall_on_beats(real_corpus):
    # why the reference's off-beat branch (and our skip) never matters through detect_loops
    for path in sorted(real_corpus.glob("*.mid")):
        grid = bars_and_beats(Score(path))
        assert grid is None or np.isin(grid[0], grid[1]).all(), path.name


def test_cli_prints_one_json_per_loop(tmp_path, capsys):
    good = tmp_path / "riff.mid"
    make_score([repeat_bars([RIFF], [0] * 8, 16)], tpq=4).dump_midi(good)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    assert main([str(good), str(bad), "--duration-offset", "0"]) == 1
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == [{"file": str(good), "track_idx": 0, "start_tick": 0, "end_tick": 16,
                     "duration_beats": 4.0, "note_density": 2.0}]
    assert "bad.mid" in err
