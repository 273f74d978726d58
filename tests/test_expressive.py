"""Expressive loops: ``reference`` mode equals the GigaMIDI v1.1 notebook (tests/expressive_oracle.py),
``default`` mode finds the expressive loops planted in the synthetic corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from symusic import Note, Score, TimeSignature, Track

from mmmlib.core.errors import ConfigError
from mmmlib.data import (
    ExpressiveLoop,
    ExpressiveOptions,
    analyse_expressive_tracks,
    detect_expressive_loops,
    expressive_default,
    expressive_reference,
    soft_matrix,
)
from mmmlib.data.loops import main as loops_main
from mmmlib.data.synth import write_corpus
from tests import expressive_oracle

REAL_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "gigamidi-tests"
# The real files the oracle checks in the default run (well under a second each); the slow
# test compares every file whose oracle cost (sum over tracks of elements^2) is below
# SLOW_ORACLE_COST, about 2 minutes of O(n^2) Python at most. The long piano performances
# beyond it (the oracle needs 5-15 minutes and up to 3.5 GB each) are compared by
# benchmarks/bench_loops.py --expressive, with a per-file timeout.
FAST_REAL_FILES = ("test_midi.mid", "6338816_Etude No. 4.mid", "empty.mid")
SLOW_ORACLE_COST = 60_000_000


def make_score(tracks: list[list[tuple]], tpq: int = 4, time_sigs=((0, 4, 4),), drums=()) -> Score:
    """A score with one track per list of (start, duration, pitch, velocity) notes, kept in order."""
    score = Score(tpq)
    for tick, numerator, denominator in time_sigs:
        score.time_signatures.append(TimeSignature(tick, numerator, denominator))
    for i, notes in enumerate(tracks):
        track = Track(f"t{i}", 0, i in drums)
        for start, duration, pitch, velocity in notes:
            track.notes.append(Note(start, duration, pitch, velocity))
        score.tracks.append(track)
    return score


def assert_same_as_oracle(score: Score, use_drum_settings: bool = False) -> list:
    fast = analyse_expressive_tracks(score, mode="reference", use_drum_settings=use_drum_settings)
    assert fast == expressive_oracle.analyse(score, use_drum_settings)
    return fast


RIFF = [(0, 2, 60), (2, 2, 62), (4, 1, 64), (5, 1, 65), (6, 2, 67), (8, 4, 64), (12, 2, 62), (14, 2, 60)]


def performed(pattern, reps: int, bar_ticks: int, rng: random.Random, jitter: int = 0, start_bar: int = 0):
    """``pattern`` (start, duration, pitch) repeated, each note moved by up to ``jitter`` ticks, velocity varied."""
    return [(max(0, (start_bar + rep) * bar_ticks + start + rng.randint(-jitter, jitter)), dur, pitch,
             rng.randint(60, 100)) for rep in range(reps) for start, dur, pitch in pattern]


# ----------------------------------------------------------------- reference mode = the notebook
def test_riff_with_velocity_variation_is_one_reference_loop():
    score = make_score([performed(RIFF, 6, 16, random.Random(0))])
    tracks = assert_same_as_oracle(score)
    # runs start on almost every barline and every loop compares equal on its first
    # element (a barline): the track keeps one loop, the shortest, from the first bar
    # (bars every 4 quarters = 16 ticks; a barline is similar to barlines only, here)
    assert [(lp.start_tick, lp.end_tick, lp.duration_beats) for lp in tracks[0].loops] == [(0, 16, 4.0)]
    assert tracks[0].loopability > 0


@pytest.mark.parametrize("use_drum_settings", [False, True])
def test_quirky_inputs_match_the_oracle(use_drum_settings):
    chords = [(t, d, p, v) for t in range(0, 64, 4) for d, p, v in ((4, 60, 80), (4, 64, 80), (2, 67, 90))]
    zero_at_bars = [(t, 0, 36, 0) for t in range(0, 64, 16)] + [(t + 1, 3, 50, 70) for t in range(0, 64, 8)]
    unsorted = [(t, 2, 60 + t % 5, 64) for t in range(60, -1, -3)]
    score = make_score([chords, zero_at_bars, unsorted, [], [(0, 2, 40, 90)] * 3], drums=(1,))
    assert len(assert_same_as_oracle(score, use_drum_settings)) == 5  # an empty track still has barlines


def test_time_term_decides_one_tick_apart():
    # drum settings (tau 0.1): a barline (velocity 0) and a set of mean velocity 254/3 give
    # 0.3 * (1 - (254/3) / 127) = 0.09999999999999998 < 0.1; one tick apart, the time term
    # 0.2 exp(-20) = 4e-10 lifts it over tau, two ticks apart it does not
    hits = [(bar + offset, 2, pitch, vel) for bar in range(0, 96, 16) for offset in (1, 2)
            for pitch, vel in ((36, 84), (38, 85), (42, 85))]
    one_tick = make_score([[n for n in hits if n[0] % 16 == 1]], drums=(0,))
    two_ticks = make_score([[n for n in hits if n[0] % 16 == 2]], drums=(0,))
    assert assert_same_as_oracle(one_tick, True)[0].loopability != assert_same_as_oracle(two_ticks, True)[0].loopability


def test_empty_and_degenerate_scores():
    assert assert_same_as_oracle(Score(480)) == []
    assert assert_same_as_oracle(make_score([[]], tpq=480)) == []  # one barline only: skipped
    assert detect_expressive_loops(Score(0), mode="reference") == expressive_oracle.detect_expressive_loops(Score(0))


@st.composite
def small_scores(draw) -> Score:
    """Short tracks over tiny alphabets (velocities too), so that similar elements and loops happen."""
    tpq = draw(st.sampled_from([1, 2, 4, 8]))
    note = st.tuples(st.integers(0, 12 * tpq), st.sampled_from([0, 1, 2, tpq]), st.sampled_from([60, 62, 67]),
                     st.sampled_from([0, 64, 64, 100]))
    tracks = draw(st.lists(st.lists(note, max_size=14), min_size=1, max_size=3))
    if draw(st.booleans()):  # repeat the first track's notes a bar later: more runs
        tracks[0] = tracks[0] + [(s + 4 * tpq, d, p, v) for s, d, p, v in tracks[0]]
    if draw(st.booleans()):
        tracks = [sorted(t) for t in tracks]
    return make_score(tracks, tpq=tpq, drums=draw(st.sets(st.integers(0, 2))))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(score=small_scores(), use_drum_settings=st.booleans())
def test_random_scores_match_the_oracle(score, use_drum_settings):
    assert_same_as_oracle(score, use_drum_settings)


@pytest.mark.parametrize("path", ["types", "factored", "direct", "tiny blocks"])
def test_every_similarity_path_matches_the_oracle(path, monkeypatch):
    if path in ("factored", "direct"):
        monkeypatch.setattr(expressive_reference, "MAX_TYPE_TABLE", 0)
    if path == "direct":
        monkeypatch.setattr(expressive_reference, "MAX_FACTOR_TABLE", 0)
    if path == "tiny blocks":
        monkeypatch.setattr(soft_matrix, "BLOCK_CELLS", 7)
    rng = random.Random(5)
    melody = [(t, rng.choice([1, 2, 4]), rng.choice([48, 55, 60, 64]), rng.choice([70, 80, 90])) for t in range(0, 96, 2)]
    score = make_score([melody + [(t, 0, 40, 80) for t in range(0, 96, 16)], performed(RIFF, 5, 16, rng)])
    assert any(track.loops for track in assert_same_as_oracle(score))


def test_synthetic_files_match_the_oracle(synth_corpus, tmp_path):
    write_corpus(tmp_path, num_files=1, num_expressive_files=2, seed=4)
    paths = sorted(synth_corpus.glob("synth_000[0-3].mid")) + sorted(tmp_path.glob("expressive_*.mid"))
    for path in paths:
        assert assert_same_as_oracle(Score(str(path))), path.name


def real_params(fast: bool) -> list:
    if not REAL_CORPUS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"real corpus not found at {REAL_CORPUS}"))]
    files = sorted(REAL_CORPUS.glob("*.mid"))
    return [pytest.param(p, id=p.name) for p in files if (p.name in FAST_REAL_FILES) == fast]


def oracle_cost(score: Score) -> int:
    bars = len(range(0, score.end() + 1, max(score.ticks_per_quarter, 1))) // 4 + 1
    return sum((len(track.notes) + bars) ** 2 for track in score.tracks)


@pytest.mark.parametrize("path", real_params(fast=True))
def test_small_real_files_match_the_oracle(path):
    score = Score(str(path))
    assert_same_as_oracle(score)
    assert_same_as_oracle(score, use_drum_settings=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", real_params(fast=False))
def test_real_files_match_the_oracle(path):
    score = Score(str(path))
    if oracle_cost(score) > SLOW_ORACLE_COST:
        pytest.skip(f"the oracle needs minutes and GBs on {path.name}: see bench_loops.py --expressive")
    assert_same_as_oracle(score)


# ----------------------------------------------------------------- the engine
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_soft_runs_equal_the_matrix_recurrence(data):
    size = data.draw(st.integers(1, 14))
    sim = np.array(data.draw(st.lists(st.booleans(), min_size=size * size, max_size=size * size))).reshape(size, size)
    is_barline = np.array(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)))
    corr = np.zeros((size, size), dtype=int)  # the reference's recurrence, cell by cell
    for i in range(size):
        for j in range(i + 1, size):
            before = corr[i - 1, j - 1] if i > 0 else 0
            if sim[i, j] and (before > 0 or is_barline[i]):
                corr[i, j] = before + 1

    def block(lag, count):  # [i, k]: elements i and i + lag + k
        rows = np.arange(size - lag + 1)[:, None]
        cols = rows + np.arange(lag, lag + count)[None, :]
        return np.where(cols < size, sim[np.minimum(rows, size - 1), np.minimum(cols, size - 1)], False)

    runs = soft_matrix.soft_runs(is_barline, block, block_cells=data.draw(st.sampled_from([1, 5, 1 << 20])))
    assert (runs.total, runs.peak) == (corr.sum(), corr.max(initial=0))
    starts = np.argwhere(corr == 1)  # row-major, as np.where lists them
    assert runs.rows.tolist() == starts[:, 0].tolist() and runs.cols.tolist() == starts[:, 1].tolist()


# ----------------------------------------------------------------- default mode
@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """20 performed files (seed 3), most tracks with a planted expressive loop."""
    folder = tmp_path_factory.mktemp("performed")
    manifest = write_corpus(folder, num_files=1, num_expressive_files=20, seed=3)
    return folder, manifest[manifest["file"].str.startswith("expressive_")]


def recall_precision(folder: Path, manifest: pd.DataFrame, mode: str) -> tuple[float, float]:
    """Share of planted loops found (start on a repetition, one period long), share of loops that are planted."""
    found, correct, detected = set(), 0, 0
    for name, rows in manifest.groupby("file"):
        truth = {row.track_idx: row for row in rows.itertuples() if row.has_loop}
        for loop in detect_expressive_loops(Score(str(folder / name)), mode=mode):
            detected += 1
            row = truth.get(loop.track_idx)
            if row is None:
                continue
            period = row.loop_end_tick - row.loop_start_tick
            offset, rest = divmod(loop.start_tick - row.loop_start_tick, period)
            if loop.end_tick - loop.start_tick == period and rest == 0 and 0 <= offset <= row.repetitions - 2:
                correct += 1
                found.add((name, loop.track_idx))
    return len(found) / int(manifest["has_loop"].sum()), correct / max(detected, 1)


def test_default_mode_finds_planted_expressive_loops(planted):
    folder, manifest = planted
    assert manifest["has_loop"].sum() >= 40
    recall, precision = recall_precision(folder, manifest, "default")
    assert recall >= 0.95 and precision >= 0.9, (recall, precision)
    # the reference's one loop per track (its shortest, from the first bar) is almost never the planted one
    assert recall_precision(folder, manifest, "reference")[0] < 0.2


def test_default_mode_on_a_performed_riff():
    # tpq 16, bars of 64 ticks: one free bar, then a 2-bar riff played 4 times, every note
    # up to 1 tick (1/16 beat) early or late, downbeats included, velocities 60-100
    rng = random.Random(1)
    riff = [(4 * s, 4 * d, p) for s, d, p in RIFF] + [(64 + 4 * s, 4 * d, p + 5) for s, d, p in RIFF]
    intro = [(t, 6, 40 + t % 7, 70) for t in range(0, 64, 8)]
    played = [(64 + s, d, p, v) for s, d, p, v in performed(riff, 4, 128, rng, jitter=1)]
    score = make_score([intro + played], tpq=16)
    loops = detect_expressive_loops(score)
    assert [(lp.start_tick, lp.end_tick, lp.duration_beats) for lp in loops] == [(64, 192, 8.0)]
    assert loops[0].note_density == 16 / 8.0  # notes per beat
    # the reference: one loop, its shortest, at the first bar
    assert [(lp.start_tick, lp.duration_beats) for lp in detect_expressive_loops(score, mode="reference")] == [(0, 4.0)]


def test_default_bar_similarity_needs_shared_pitches():
    bars = np.array([0, 16, 32, 48])
    same = make_score([[(0, 4, 60, 80), (8, 4, 64, 80), (16, 4, 60, 100), (25, 4, 64, 60),
                        (32, 4, 61, 80), (40, 4, 65, 80)]], tpq=4).tracks[0]
    similarity, counts = expressive_default.bar_similarity(same, bars, 4, 0.25, 0.2)
    assert counts.tolist() == [2, 2, 2, 0]
    assert np.allclose(similarity, similarity.T)
    assert 0.8 < similarity[0, 1] < 1.0  # same pitches, a position off by 1/4 beat, other velocities
    assert similarity[0, 2] == 0.0  # same rhythm and velocities, no shared pitch
    assert similarity[2, 3] == 0.0 and similarity[3, 3] == 1.0  # empty bars


def test_default_mode_uses_the_time_signature():
    rng = random.Random(2)
    waltz = [(0, 4, 48), (4, 2, 55), (6, 2, 59), (8, 4, 55)]  # one bar of 3/4 at tpq 4
    score = make_score([performed(waltz, 6, 12, rng)], time_sigs=[(0, 3, 4)])
    assert [(lp.start_tick, lp.end_tick, lp.duration_beats) for lp in detect_expressive_loops(score)] == [(0, 12, 3.0)]
    # the reference counts bars of 4 quarters: its loop spans 4/3 of a waltz bar
    assert [(lp.start_tick, lp.end_tick) for lp in detect_expressive_loops(score, mode="reference")] == [(0, 16)]


def test_analyse_selects_tracks_and_reports_loopability():
    rng = random.Random(3)
    free = [(t, 2, rng.randrange(40, 90), 80) for t in range(0, 64, 2)]
    score = make_score([performed(RIFF, 4, 16, rng), free], tpq=4)
    results = analyse_expressive_tracks(score, tracks=[1, 0])
    assert [r.track_idx for r in results] == [1, 0]
    assert results[0].loops == [] and 0 <= results[0].loopability < results[1].loopability
    assert all(loop.loopability == results[1].loopability for loop in results[1].loops)


def test_options_are_checked():
    with pytest.raises(ConfigError) as info:
        ExpressiveOptions(mode="exact")
    assert info.value.setting == "mode"
    for name, value in (("tau", 0.0), ("tau_drums", 2.0), ("max_beats", 0.5), ("max_shift_quarters", -1.0)):
        with pytest.raises(ConfigError) as info:
            detect_expressive_loops(Score(480), **{name: value})
        assert info.value.setting == name
    with pytest.raises(TypeError):
        detect_expressive_loops(Score(480), taus=0.3)


def test_cli_prints_one_json_per_loop_with_loopability(tmp_path, capsys):
    good = tmp_path / "riff.mid"
    make_score([performed(RIFF, 6, 16, random.Random(0))], tpq=4).dump_midi(good)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    assert loops_main(["--expressive", "--mode", "reference", str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    expected = detect_expressive_loops(Score(str(good)), mode="reference")
    assert [ExpressiveLoop(**{k: v for k, v in row.items() if k != "file"}) for row in rows] == expected
    assert set(rows[0]) == {"file", "track_idx", "start_tick", "end_tick", "duration_beats", "note_density",
                            "loopability"}
    assert "bad.mid" in err
    assert loops_main(["--expressive", str(good)]) == 0  # default mode
    assert json.loads(capsys.readouterr().out.splitlines()[0])["duration_beats"] == 4.0
