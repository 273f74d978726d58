"""Evaluation of loops: reference windows, exact and expressive loops, marked-loop seams, loop controls."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from symusic import Note, Score, Tempo, TimeSignature, Track

from mmmlib import evaluation as evaluate
from mmmlib.core.midi import read_score
from mmmlib.evaluation import distributions, loop_controls, metrics, reference
from mmmlib.evaluation import figures as eval_plots
from mmmlib.evaluation.demo_summary import main as demo_summary

TPQ = 480
BAR = 4 * TPQ
LOOP_PITCHES = [60, 62, 64, 65, 67, 65, 64, 62]  # one bar of eighths: a narrow, dense pattern


# --------------------------------------------------------------------------- fixtures
def new_score(numerator: int = 4) -> Score:
    score = Score(TPQ)
    score.tempos.append(Tempo(0, 120.0))
    score.time_signatures.append(TimeSignature(0, numerator, 4))
    return score


def add_loop_bars(track: Track, first_bar: int, num_bars: int, bar: int = BAR) -> None:
    """The one-bar pattern of :data:`LOOP_PITCHES`, ``num_bars`` times from ``first_bar``."""
    for b in range(first_bar, first_bar + num_bars):
        for k, pitch in enumerate(LOOP_PITCHES):
            track.notes.append(Note(b * bar + k * TPQ // 2, TPQ // 4, pitch, 90))


def song_score() -> Score:
    """24 bars: 8 sparse bars over a wide range, the loop pattern for 8 bars, 8 sparse bars again."""
    score, track = new_score(), Track("piano", 0, False)
    for b in [*range(8), *range(16, 24)]:  # one low and one high note per bar: wide range, low density
        track.notes.append(Note(b * BAR, TPQ, 30 + b, 70))
        track.notes.append(Note(b * BAR + 2 * TPQ, TPQ, 100 - b, 70))
    add_loop_bars(track, 8, 8)
    track.notes.sort()
    score.tracks.append(track)
    return score


def clip_score() -> Score:
    """A generated 4-bar clip holding exactly the song's loop content."""
    score, track = new_score(), Track("piano", 0, False)
    add_loop_bars(track, 0, 4)
    score.tracks.append(track)
    return score


def write_reference_dir(folder, scores: dict[str, Score], loops: list[dict]):
    (folder / "midi").mkdir(parents=True)
    files = []
    for md5, score in scores.items():
        path = folder / "midi" / f"{md5}.mid"
        score.dump_midi(str(path))
        files.append({"md5": md5, "path": str(path), "row": -1, "split": "test", "tpq": TPQ})
    pd.DataFrame(files).to_parquet(folder / "files.parquet", index=False)
    columns = ["md5", "track_idx", "start_tick", "end_tick", "duration_beats", "note_density", "kind", "loopability"]
    pd.DataFrame(loops, columns=columns).to_parquet(folder / "loops.parquet", index=False)
    return folder


def loop_row(md5: str, track_idx: int, start_tick: int, end_tick: int, kind: str = "exact") -> dict:
    return {"md5": md5, "track_idx": track_idx, "start_tick": start_tick, "end_tick": end_tick,
            "duration_beats": (end_tick - start_tick) / TPQ, "note_density": 2.0, "kind": kind,
            "loopability": np.nan if kind == "exact" else 0.9}


def performed_score(seed: int = 0) -> Score:
    """The loop pattern played four times with varying durations and velocities: an expressive loop
    (same pitches at nearly the same places) that the exact detector cannot see."""
    rng = np.random.default_rng(seed)
    score, track = new_score(), Track("piano", 0, False)
    for b in range(4):
        for k, pitch in enumerate(LOOP_PITCHES):
            onset = b * BAR + k * TPQ // 2 + (int(rng.integers(-15, 16)) if b else 0)
            track.notes.append(Note(max(onset, 0), TPQ // 3 + int(rng.integers(-10, 10)), pitch,
                                    int(rng.integers(60, 100))))
    score.tracks.append(track)
    return score


def scattered_score(seed: int = 0) -> Score:
    """Four bars of notes at random pitches: no loop of any kind."""
    rng = np.random.default_rng(seed)
    score, track = new_score(), Track("piano", 0, False)
    for b in range(4):
        for k in range(8):
            track.notes.append(Note(b * BAR + k * TPQ // 2, TPQ // 4, int(rng.integers(40, 90)), 80))
    score.tracks.append(track)
    return score


# --------------------------------------------------------------------------- reference windows
def test_a_reference_window_has_the_features_of_a_generated_clip_of_the_same_content(tmp_path):
    ref_dir = write_reference_dir(tmp_path / "data", {"song": song_score()},
                                  [loop_row("song", 0, 8 * BAR, 12 * BAR), loop_row("song", 0, 12 * BAR, 16 * BAR)])
    windows = reference.reference_windows(ref_dir, num_bars=4, seed=3)
    whole = distributions.reference_features(ref_dir)
    clip = pd.DataFrame(distributions.score_features(clip_score(), "gen", length_ticks=4 * BAR))
    assert windows["window_source"].tolist() == ["loop"]
    assert windows["start_tick"].iloc[0] in (8 * BAR, 12 * BAR) and windows["length_ticks"].iloc[0] == 4 * BAR
    features = [*distributions.CONTINUOUS_FEATURES, *distributions.PITCH_CLASS_COLUMNS]
    assert windows[features].iloc[0].to_numpy(float) == pytest.approx(clip[features].iloc[0].to_numpy(float))
    assert windows["pitch_range"].iloc[0] == 7 and windows["note_density"].iloc[0] == pytest.approx(2.0)
    # the whole song, what 05 compared before: its length widened the range and thinned the density
    assert whole["pitch_range"].iloc[0] == 70 and whole["note_density"].iloc[0] == pytest.approx(96 / 95, rel=0.01)


def test_files_without_loops_get_a_seeded_bar_aligned_window_and_say_so(tmp_path):
    waltz, track = new_score(numerator=3), Track("piano", 0, False)
    for b in range(20):  # twenty 3/4 bars, no loop listed for this file
        track.notes.append(Note(b * 3 * TPQ, TPQ, 50 + b, 80))
    waltz.tracks.append(track)
    band = song_score()
    band.tracks.append(Track("bass", 33, False))
    band.tracks[1].notes.append(Note(0, TPQ, 40, 80))
    ref_dir = write_reference_dir(tmp_path / "data", {"waltz": waltz, "band": band},
                                  [loop_row("band", 0, 8 * BAR, 12 * BAR)])
    windows = reference.reference_windows(ref_dir, num_bars=4, seed=5).set_index(["unit", "track_idx"])
    again = reference.reference_windows(ref_dir, num_bars=4, seed=5).set_index(["unit", "track_idx"])
    random_window = windows.loc[("waltz", 0)]
    assert random_window["window_source"] == "random"
    assert random_window["length_ticks"] == 4 * 3 * TPQ  # bars of the file's own time signature
    assert random_window["start_tick"] % (3 * TPQ) == 0 and random_window["start_tick"] + 4 * 3 * TPQ <= 20 * 3 * TPQ
    assert again.loc[("waltz", 0), "start_tick"] == random_window["start_tick"]  # the seed decides
    assert windows.loc[("band", 0), "window_source"] == "loop"
    assert windows.loc[("band", 1), "window_source"] == "file loop"  # the bass has no loop: its part in one
    assert windows.loc[("band", 1), "start_tick"] == 8 * BAR


def test_compare_to_reference_uses_windows_of_the_generations_length_by_default(tmp_path):
    ref_dir = write_reference_dir(tmp_path / "data", {"song": song_score()}, [loop_row("song", 0, 8 * BAR, 12 * BAR)])
    clip_score().dump_midi(str(tmp_path / "gen.mid"))
    final = pd.DataFrame({"gen_id": ["0"], "track_idx": [0], "midi_file": [str(tmp_path / "gen.mid")], "n_bars": [4]})
    _, windows, _ = evaluate.compare_to_reference(final, str(ref_dir), num_resamples=0)
    _, whole, _ = evaluate.compare_to_reference(final, str(ref_dir), num_resamples=0, use_windows=False)
    assert windows["pitch_range"].tolist() == [7.0] and "window_source" in windows
    assert whole["pitch_range"].tolist() == [70.0] and "window_source" not in whole


# --------------------------------------------------------------------------- loops by kind
def write_tracks(folder, scores: list[Score]) -> pd.DataFrame:
    """One generation per score (its track 0), as final rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, score in enumerate(scores):
        path = folder / f"gen{i}.mid"
        score.dump_midi(str(path))
        rows.append({"gen_id": str(i), "attempt": 0, "track_idx": 0, "midi_file": str(path), "n_bars": 4,
                     "loop_files": ""})
    return pd.DataFrame(rows)


def test_exact_and_expressive_loop_shares(tmp_path):
    final = write_tracks(tmp_path, [clip_score(), performed_score(0), performed_score(1), scattered_score()])
    tracks, source = evaluate.track_loopability(final, read_score)
    assert source == "detector"
    assert tracks["has_loop"].tolist() == [True, False, False, False]  # performed loops are not exact
    assert tracks["has_expressive_loop"].tolist() == [1.0, 1.0, 1.0, 0.0]
    table = evaluate.loopability_table(tracks, num_resamples=200, seed=0)
    assert table.loc["tracks", "share"] == 0.25 and table.loc["expressive", "share"] == 0.75
    low, high = table.loc["expressive", "share_ci"]
    assert low < 0.75 < high
    assert evaluate.loop_lengths(tracks, "expressive").size >= 3 and evaluate.loop_lengths(tracks).size >= 1


# --------------------------------------------------------------------------- marked loops
def write_loop_file(label_dir, name: str, score: Score) -> str:
    (label_dir / "MIDI" / "loops").mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(label_dir / "MIDI" / "loops" / name))
    return f"MIDI/loops/{name}"


def test_marked_loops_pass_when_they_loop_across_the_seam(tmp_path):
    one_bar, two_bars = new_score(), new_score()
    one_bar.tracks.append(Track("piano", 0, False))
    add_loop_bars(one_bar.tracks[0], 0, 1)  # a one-bar loop: 4 beats, the detector's shortest
    two_bars.tracks.append(Track("piano", 0, False))
    add_loop_bars(two_bars.tracks[0], 0, 2)
    sparse, too_long = new_score(), new_score()
    sparse.tracks.append(Track("piano", 0, False))
    sparse.tracks[0].notes.extend([Note(0, TPQ, 60, 80), Note(BAR, TPQ, 62, 80)])  # too few notes to repeat
    too_long.tracks.append(Track("piano", 0, False))
    for b in range(9):  # 36 beats of changing bars: longer than the detector's 32-beat loops
        too_long.tracks[0].notes.extend(Note(b * BAR + k * TPQ // 2, TPQ // 4, 40 + b * 3 + k % 3, 80)
                                        for k in range(8))
    names = [write_loop_file(tmp_path, f"{name}.mid", s)
             for name, s in (("one", one_bar), ("two", two_bars), ("sparse", sparse), ("long", too_long))]
    final = pd.DataFrame({"gen_id": ["0", "0", "1"], "track_idx": [0, 1, 0],
                          "loop_files": [";".join(names[:2]), names[2], names[3]]})
    marked = evaluate.marked_loop_seams(final, tmp_path, read_score)
    assert marked["seam_ok"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert marked["loop_file"].iloc[0] == str(tmp_path / names[0])
    tracks = final.assign(has_loop=True, seam_ok=np.nan, has_expressive_loop=np.nan)
    table = evaluate.loopability_table(tracks, num_resamples=50, marked=marked)
    assert table.loc["marked_seam", "share"] == 0.5 and table.loc["marked_seam", "n"] == 4


def test_a_run_without_marked_loops_has_no_marked_seam_share_and_says_why(tmp_path):
    final = write_tracks(tmp_path, [clip_score()])
    tracks, _ = evaluate.track_loopability(final, read_score)
    marked = evaluate.marked_loop_seams(final, tmp_path, read_score)
    table = evaluate.loopability_table(tracks, num_resamples=20, marked=marked)
    assert marked.empty and np.isnan(table.loc["marked_seam", "share"]) and table.loc["marked_seam", "n"] == 0
    assert "marks no loops" in table.loc["marked_seam", "note"]
    numbers = evaluate.loop_headline(pd.DataFrame(), table)
    assert np.isnan(numbers["marked_loop_seam_share"])
    assert "marks no loops" in numbers["loop_notes"]["marked_loop_seam_share"]


# --------------------------------------------------------------------------- loop controls
def test_duration_bin_follows_the_published_bins():
    assert [loop_controls.measured_duration_bin([q]) for q in (4, 6, 6.5, 8, 16, 33)] == [1, 1, 2, 2, 4, 7]
    assert loop_controls.measured_duration_bin([8, 8, 16]) == 2  # most loops
    assert loop_controls.measured_duration_bin([8, 16]) == 4  # a tie goes to the longer bin
    assert np.isnan(loop_controls.measured_duration_bin([]))


def test_loop_count_and_duration_accuracy_with_a_baseline():
    # 8 controlled tracks ask for 2 loops in bin 2 (8 quarters: 2 bars of 4/4, as 04 fills it);
    # 4 baseline tracks have no loop controls (-1 and an empty bin).
    measured_count = [2, 2, 2, 2, 2, 1, 7, 0, 2, 1, 3, 0]
    quarters = [[8, 8], [8, 8], [8, 8], [8, 16], [16, 16], [8], [8] * 7, [], [8, 8], [16], [4, 4, 4], []]
    frame = pd.DataFrame({"gen_id": [str(i) for i in range(12)], "track_idx": 0, "program": 0, "is_drum": False,
                          "midi_file": [f"g{i}.mid" for i in range(12)],
                          "loop_count_requested": [2] * 8 + [-1] * 4, "n_loops_detected": measured_count,
                          "loop_duration_bin_requested": [2.0] * 8 + [np.nan] * 4})
    tracks = frame[["midi_file", "track_idx"]].assign(loop_quarters=quarters)
    scored = evaluate.with_loop_measures(frame, tracks)
    assert scored["loop_duration_bin_requested"].tolist() == [2] * 8 + [-1] * 4
    assert scored["loop_duration_bin_measured"].tolist()[:5] == [2, 2, 2, 4, 4]  # [8, 16]: tie, longer bin
    assert evaluate.controls_in(scored) == ["loop_count", "loop_duration_bin"]
    count = metrics.control_fidelity(scored, "loop_count", num_resamples=200).overall
    duration = metrics.control_fidelity(scored, "loop_duration_bin", num_resamples=200).overall
    assert count["exact_accuracy"] == 5 / 8  # 2, 2, 2, 2, 2 hit; 1, 7 (5+), 0 miss
    assert count["baseline_exact_accuracy"] == 0.25  # one baseline track in four has 2 loops
    assert duration["exact_accuracy"] == 5 / 8  # bins 2, 2, 2, 4, 4, 2, 2, none
    assert duration["num_baseline_tracks"] == 4
    assert duration["baseline_exact_accuracy"] == 0.25  # [8, 8]: bin 2; [16], [4, 4, 4], []: not
    for numbers in (count, duration):
        low, high = numbers["exact_accuracy_ci"]
        assert low <= numbers["exact_accuracy"] <= high and high - low > 0


def test_summary_and_demo_summary_report_the_loop_numbers(tmp_path, capsys):
    frame = pd.DataFrame({"gen_id": [str(i) for i in range(6)], "track_idx": 0, "program": 0, "is_drum": False,
                          "loop_count_requested": [1, 1, 1, 1, -1, -1], "n_loops_detected": [1, 1, 1, 0, 0, 0],
                          "loop_duration_bin_requested": [2, 2, 2, 2, -1, -1],
                          "loop_duration_bin_measured": [2, 2, 1, np.nan, 2, np.nan]})
    fidelity = metrics.fidelity_table([metrics.control_fidelity(frame, name, 50)
                                       for name in ("loop_count", "loop_duration_bin")])
    loops = pd.DataFrame({"unit": ["tracks", "files", "seam", "expressive", "marked_seam"], "n": [6, 6, 3, 6, 0],
                          "share": [0.5, 0.5, 1.0, 0.75, np.nan],
                          "share_ci": [(0.2, 0.8), (0.2, 0.8), (1.0, 1.0), (0.5, 1.0), (np.nan, np.nan)],
                          "note": ["", "", "", "", "the run marks no loops"]}).set_index("unit")
    validity = {"validity": 1.0, "num_generations": 6, "num_successful_generations": 6, "attempts_per_success": 1.0,
                "tokens_per_loop": 100.0, "seconds_per_loop": 1.0}
    summary = evaluate.headline(fidelity, validity, loops)
    assert summary["exact_loop_share"] == 0.5 and summary["expressive_loop_share_ci"] == (0.5, 1.0)
    assert summary["loop_count_accuracy"] == 0.75 and summary["baseline_loop_count_accuracy"] == 0.0
    assert summary["loop_duration_accuracy"] == 0.5 and summary["baseline_loop_duration_accuracy"] == 0.5
    run_dir = tmp_path / "demo"
    evaluate.write_outputs(run_dir / "evaluate", summary, {"loops": evaluate.loop_summary(summary)})
    written = json.loads((run_dir / "evaluate" / "summary.json").read_text())
    assert written["marked_loop_seam_share"] is None and written["loop_count_accuracy_ci"][0] <= 0.75
    capsys.readouterr()
    demo_summary([str(run_dir)])
    out = capsys.readouterr().out
    assert ("loops: exact 0.500 [0.200-0.800], expressive 0.750 [0.500-1.000], marked loops repeating in their "
            "track n/a, marked-loop seam n/a") in out
    assert "loop count accuracy 0.750" in out and "loop duration accuracy 0.500" in out
    assert "the run marks no loops" in out


def test_loop_figures_are_written(tmp_path):
    table = pd.DataFrame({"unit": ["tracks", "files", "seam", "expressive", "marked_seam"], "n": [4, 2, 1, 4, 0],
                          "share": [0.5, 1.0, 1.0, 0.75, np.nan],
                          "share_ci": [(0.2, 0.8), (1.0, 1.0), (1.0, 1.0), (0.5, 1.0), (np.nan, np.nan)]}
                         ).set_index("unit")
    eval_plots.loopability_bars(table, tmp_path)
    eval_plots.loop_length_histogram(pd.Series([4.0, 8.0]), tmp_path, pd.Series([4.0, 4.0, 16.0]), "exact")
    eval_plots.loop_length_histogram(pd.Series([], dtype=float), tmp_path, pd.Series([8.0]), "expressive")
    for name in ("loopability", "loop_lengths", "loop_lengths_expressive"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000, name


def test_reference_loop_lengths_by_kind(tmp_path):
    ref_dir = write_reference_dir(tmp_path / "data", {"song": song_score()},
                                  [loop_row("song", 0, 8 * BAR, 12 * BAR),
                                   loop_row("song", 0, 0, 2 * BAR, "expressive"),
                                   loop_row("other", 0, 0, BAR)])  # a file not in files.parquet: not counted
    assert reference.reference_loop_lengths(ref_dir, "test", "exact").tolist() == [16.0]
    assert reference.reference_loop_lengths(ref_dir, "test").tolist() == [16.0, 8.0]
    assert reference.reference_loop_lengths("", "test").empty


def test_marked_repeats_count_each_marked_loop_once():
    tracks = pd.DataFrame({"gen_id": ["a", "a", "b", "c"], "n_loop_markers": [2, 0, 1, "3"],
                           "n_marked_loops_repeating": [1, 0, 1, "0"], "has_loop": [True, False, False, True],
                           "seam_ok": [1.0, np.nan, np.nan, 0.0]})
    values, units = evaluate.loopability.marked_repeats(tracks)
    assert values.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0] and units.tolist() == ["a", "a", "b", "c", "c", "c"]
    table = evaluate.loopability_table(tracks, num_resamples=50)
    assert table.loc["marked_repeat", "n"] == 6 and table.loc["marked_repeat", "share"] == pytest.approx(2 / 6)
    assert np.isnan(evaluate.loopability_table(tracks.drop(columns=["n_loop_markers"]), 10).loc["marked_repeat", "share"])
