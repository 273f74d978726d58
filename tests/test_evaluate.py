"""Evaluation: merging the ranks' results, metrics on hand-made cases, figures, and 05 end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmmlib import evaluation as evaluate
from mmmlib.evaluation import audio, distributions, loopability, metrics
from mmmlib.evaluation import figures as eval_plots
from mmmlib.generation import RESULT_COLUMNS, control_accuracy

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "05_evaluate.ipynb"
TPQ = 480
COLUMNS = RESULT_COLUMNS


# --------------------------------------------------------------------------- fixtures
def loop_score(level: int, num_bars: int = 4, pitch: int = 60, last_bar_pitch: int | None = None,
               drums: bool = True):
    """A score repeating one bar whose onsets all sit on metric level ``level`` (0, 2 or 4).

    Level 2i puts every onset on an odd multiple of ``tpq / 2**i`` (e.g. off-beat eighths
    for 2), so every onset, hence the median, has that level. ``last_bar_pitch`` makes the
    last bar different (a loop whose seam does not continue).
    """
    from symusic import Note, Score, Track

    score = Score(TPQ)
    step = TPQ // 2 ** (level // 2)
    odd_steps = range(1, 4 * 2 ** (level // 2) + 1, 2)
    onsets = [step * k for k in odd_steps] if level else list(range(0, 4 * TPQ, TPQ))
    onsets = (onsets * 2)[:8] if len(onsets) < 8 else onsets[:8]
    onsets = sorted(set(onsets))
    piano = Track("piano", 0, False)
    for bar in range(num_bars):
        base = pitch if last_bar_pitch is None or bar < num_bars - 1 else last_bar_pitch
        for k, onset in enumerate(onsets):
            piano.notes.append(Note(bar * 4 * TPQ + onset, step // 2, base + (k % 4) * 2, 80))
    score.tracks.append(piano)
    if drums:
        kit = Track("drums", 0, True)
        for bar in range(num_bars):
            for k in range(8):
                kit.notes.append(Note(bar * 4 * TPQ + k * TPQ // 2, TPQ // 4, 36 if k % 2 == 0 else 42, 100))
        score.tracks.append(kit)
    return score


def result_row(gen_id: int, attempt: int, track_idx: int, **values) -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update(gen_id=gen_id, label="demo", rank=gen_id % 2, attempt=attempt, seed=gen_id,
               track_idx=track_idx, program=0, is_drum=False, nomml_requested=-1, nomml_measured="",
               loop_count_requested=-1,
               n_loops_detected=1, is_loop=True, n_bars=4, n_notes=32, n_tokens=200, seconds=1.5,
               status="ok", reason="")
    row.update(values)
    return row


def write_run(label_dir: Path, num_controlled: int = 9, num_baseline: int = 3) -> pd.DataFrame:
    """A tiny generation run: controlled generations (one wrong), baseline ones, a failure."""
    (label_dir / "MIDI").mkdir(parents=True)
    rows = [result_row(0, 0, "", status="failed", reason="no loop found", n_tokens=150, seconds=1.0,
                       midi_path="")]
    levels = [0, 2, 4]
    for gen in range(num_controlled + num_baseline):
        requested = levels[gen % 3] if gen < num_controlled else -1
        measured = 4 if requested == -1 or gen == 1 else requested  # gen 1 misses (asked 2, got 4)
        path = f"MIDI/gen{gen:03d}.mid"
        loop_score(measured, pitch=48 + gen).dump_midi(str(label_dir / path))
        attempt = 1 if gen == 0 else 0
        rows.append(result_row(gen, attempt, 0, midi_path=path, nomml_requested=requested,
                               nomml_measured=measured))
        rows.append(result_row(gen, attempt, 1, midi_path=str(label_dir / path), program=0, is_drum=True,
                               nomml_requested=requested, nomml_measured=0 if requested == -1 else requested))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame[frame["rank"] == 0].to_csv(label_dir / "RESULTS_0.csv", index=False)
    frame[frame["rank"] == 1].to_csv(label_dir / "RESULTS_1.csv", index=False)
    return frame


def write_reference(data_dir: Path, num_files: int = 4) -> Path:
    (data_dir / "midi").mkdir(parents=True)
    rows = []
    for i in range(num_files):
        path = data_dir / "midi" / f"ref{i}.mid"
        loop_score([0, 2, 4][i % 3], num_bars=8, pitch=55 + i).dump_midi(str(path))
        rows.append({"md5": f"md5{i}", "path": str(path), "row": -1, "split": "test", "tpq": TPQ})
    pd.DataFrame(rows).to_parquet(data_dir / "files.parquet", index=False)
    # loops of every file but the last (which gets a random window): one bar from bar 2 of its piano
    loops = [{"md5": f"md5{i}", "track_idx": 0, "start_tick": 2 * 4 * TPQ, "end_tick": 3 * 4 * TPQ,
              "duration_beats": 4.0, "note_density": 2.0, "kind": "exact", "loopability": np.nan}
             for i in range(num_files - 1)]
    pd.DataFrame(loops).to_parquet(data_dir / "loops.parquet", index=False)
    return data_dir


# --------------------------------------------------------------------------- merge
def test_merge_is_idempotent_and_drops_duplicates(tmp_path):
    label_dir = tmp_path / "demo"
    frame = write_run(label_dir)
    with open(label_dir / "RESULTS_1.csv", "a") as out:  # a rank that wrote one row twice
        pd.DataFrame([frame[frame["rank"] == 1].iloc[0]]).to_csv(out, header=False, index=False)
    merged = evaluate.merge_results(label_dir)
    first = (label_dir / "RESULTS.csv").read_bytes()
    again = evaluate.merge_results(label_dir)
    assert (label_dir / "RESULTS.csv").read_bytes() == first
    assert len(merged) == len(frame) == len(again)
    assert not merged.duplicated(["gen_id", "attempt", "track_idx"]).any()
    assert first.startswith(b"gen_id,") and first.count(b"gen_id,") == 1  # one header
    assert not list(label_dir.glob(".RESULTS*")), "no temporary file may be left behind"


def test_merge_tolerates_a_truncated_last_line_and_names_a_malformed_file(tmp_path):
    label_dir = tmp_path / "demo"
    frame = write_run(label_dir)
    text = (label_dir / "RESULTS_0.csv").read_text()
    (label_dir / "RESULTS_0.csv").write_text(text + "99,demo,0,0,99,MIDI/x.mid,0,0,Fal")  # rank still writing
    (label_dir / "RESULTS_7.csv").write_text("this,is,not\na results,file,at all\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        merged = evaluate.merge_results(label_dir)
    messages = [str(w.message) for w in caught if issubclass(w.category, evaluate.MergeWarning)]
    assert any("RESULTS_7.csv" in m and "malformed" in m for m in messages), messages
    assert len(merged) == len(frame)
    assert "99" not in set(merged["gen_id"])


def test_final_generations_keep_the_last_ok_attempt_and_resolve_paths(tmp_path):
    label_dir = tmp_path / "demo"
    write_run(label_dir)
    final = evaluate.final_generations(evaluate.merge_results(label_dir), label_dir)
    assert set(final.loc[final["gen_id"] == "0", "attempt"]) == {1}
    assert final["status"].eq("ok").all()
    assert all(Path(p).is_file() for p in final["midi_file"])  # relative and absolute paths both resolved


# --------------------------------------------------------------------------- metrics
def fidelity_frame(requested: np.ndarray, measured: np.ndarray, tracks_per_gen: int = 2) -> pd.DataFrame:
    n = len(requested)
    return pd.DataFrame({"gen_id": np.arange(n) // tracks_per_gen, "track_idx": np.arange(n) % tracks_per_gen,
                         "program": 0, "is_drum": np.arange(n) % 2 == 1,
                         "nomml_requested": requested, "nomml_measured": measured})


def baseline_frame(measured: np.ndarray, offset: int = 100) -> pd.DataFrame:
    """Tracks generated without NOMML control (requested -1), in generations of their own."""
    return fidelity_frame(np.full(len(measured), -1), measured).assign(gen_id=lambda d: d["gen_id"] + offset)


def test_04_quick_look_and_05_per_level_table_are_the_same_numbers(tmp_path):
    label_dir = tmp_path / "demo"
    write_run(label_dir)
    final = evaluate.final_generations(evaluate.merge_results(label_dir), label_dir)
    quick = control_accuracy(final, "nomml")  # what 04 shows
    per_level = metrics.control_fidelity(final, "nomml", num_resamples=50).per_level  # what 05 shows
    assert list(quick.index) == [0, 2, 4]  # no-control rows (-1) have no target: left out
    # every level has 3 generations x 2 tracks; gen 1 asked for 2 and its pitched track measured 4
    assert quick.loc[2, "num_tracks"] == 6 and quick.loc[2, "exact_accuracy"] == pytest.approx(5 / 6)
    assert quick.loc[2, "near_accuracy"] == 1.0  # 4 (sixteenths) is one subdivision from 2 (eighths): near
    assert quick.loc[0, "exact_accuracy"] == 1.0
    for column in ("num_tracks", "exact_accuracy", "near_accuracy", "measured_mean"):
        assert per_level[column].tolist() == pytest.approx(quick[column].tolist())


def test_last_attempts_keep_each_generations_final_status(tmp_path):
    from mmmlib.generation import last_attempts

    results = pd.DataFrame([result_row(0, 0, 0, status="failed"), result_row(0, 1, 0, status="ok"),
                            result_row(1, 0, 0, status="failed")], columns=COLUMNS)
    last = last_attempts(results)
    assert sorted(zip(last["gen_id"], last["attempt"], last["status"], strict=True)) == [
        (0, 1, "ok"), (1, 0, "failed")]


def test_perfect_control_has_accuracy_one():
    requested = np.tile([0, 2, 4, 6], 25)
    fid = metrics.control_fidelity(fidelity_frame(requested, requested), "nomml", num_resamples=100)
    assert fid.overall["exact_accuracy"] == 1.0
    assert fid.overall["near_accuracy"] == 1.0
    assert fid.overall["exact_accuracy_ci"] == (1.0, 1.0)
    assert fid.overall["spearman"] == pytest.approx(1.0)
    assert np.diag(fid.confusion.loc[[0, 2, 4, 6], [0, 2, 4, 6]]).sum() == 100


def test_shuffled_control_is_near_chance_and_matches_its_baseline():
    rng = np.random.default_rng(0)
    requested = rng.integers(0, 13, 3000)
    measured = rng.integers(0, 13, 3000)
    baseline = rng.integers(0, 13, 3000)
    frame = pd.concat([fidelity_frame(requested, measured), baseline_frame(baseline, offset=10_000)])
    fid = metrics.control_fidelity(frame, "nomml", num_resamples=200, seed=1)
    assert fid.overall["exact_accuracy"] == pytest.approx(1 / 13, abs=0.02)
    assert fid.overall["baseline_exact_accuracy"] == pytest.approx(1 / 13, abs=0.02)
    assert abs(fid.overall["spearman"]) < 0.06
    low, high = fid.overall["gain_ci"]
    assert low < 0 < high, "a control that is ignored must not beat the baseline"


def test_baseline_accuracy_is_the_chance_of_hitting_the_requested_levels():
    requested = np.tile([0, 2, 4], 10)  # every level requested equally often
    frame = pd.concat([fidelity_frame(requested, requested), baseline_frame(np.full(12, 2))])
    fid = metrics.control_fidelity(frame, "nomml", num_resamples=50)
    assert fid.overall["baseline_exact_accuracy"] == pytest.approx(1 / 3)  # always 2: hits one level in three
    assert fid.overall["baseline_near_accuracy"] == 1.0  # 2 is near 0, 2 and 4 (binary, one subdivision)
    assert fid.per_level.loc[2, "baseline_exact_accuracy"] == 1.0
    assert fid.overall["gain_ci"][0] > 0


def test_near_levels_follow_the_grid_families_not_the_numbers():
    from mmmlib.data.nomml import near_levels

    requested = np.array([2, 2, 2, 2, 1, 3, 12, 12, 10, 0, 2])
    measured = np.array([1, 3, 4, 0, 3, 5, 12, 11, 12, 2, np.nan])
    # eighths vs quarter or eighth triplets: neighbours by number, not by feel
    expected = [False, False, True, True, True, True, True, False, False, True, False]
    assert near_levels(requested, measured).tolist() == expected
    assert near_levels(np.array([[4], [5]]), np.arange(13)).sum(axis=1).tolist() == [3, 3]  # broadcasts


def test_failed_generations_count_as_misses(tmp_path):
    from mmmlib.generation import scored_generations

    rows = [result_row(0, 0, 0, status="ok"), result_row(0, 0, 1, status="ok"),  # passes at once
            result_row(1, 0, 0, status="failed"), result_row(1, 0, 1, status="ok"),  # never passes:
            result_row(1, 1, 0, status="failed"), result_row(1, 1, 1, status="failed")]  # a miss, not a gap
    results = pd.DataFrame(rows, columns=COLUMNS)
    results["nomml_requested"], results["nomml_measured"] = 2, 2
    scored = scored_generations(results, tmp_path)
    assert sorted(zip(scored["gen_id"], scored["attempt"], scored["passed"], strict=True)) == [
        (0, 0, True), (0, 0, True), (1, 1, False), (1, 1, False)]
    assert scored.loc[~scored["passed"], "nomml_measured"].isna().all()
    fid = metrics.control_fidelity(scored, "nomml", num_resamples=20)
    assert fid.overall["exact_accuracy"] == 0.5 and fid.overall["num_tracks"] == 4
    assert control_accuracy(scored, "nomml").loc[2, "exact_accuracy"] == 0.5  # 04's quick look agrees


def test_loop_count_five_means_five_or_more():
    frame = fidelity_frame(np.array([5, 5, 1, 1]), np.array([0, 0, 0, 0])).assign(
        loop_count_requested=[5, 5, 1, 1], n_loops_detected=[7, 5, 1, 3])
    fid = metrics.control_fidelity(frame, "loop_count", num_resamples=20)
    assert fid.overall["exact_accuracy"] == 0.75  # 7 loops answer a request for "5 or more"


def test_cluster_bootstrap_resamples_whole_groups_reproducibly():
    groups = np.array([0, 0, 0, 1, 2, 2])
    draws = list(metrics.resample_indices(groups, 20, seed=3))
    for idx in draws:
        picked = groups[idx]
        for g in (0, 2):  # a group comes with all its rows, as often as it was drawn
            assert np.sum(picked == g) % np.sum(groups == g) == 0
    again = list(metrics.resample_indices(groups, 20, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(draws, again, strict=True))


def test_validity_counts_attempts_and_cost(tmp_path):
    label_dir = tmp_path / "demo"
    write_run(label_dir, num_controlled=3, num_baseline=0)
    results = evaluate.merge_results(label_dir)
    final = evaluate.final_generations(results, label_dir).assign(has_loop=True)
    numbers = metrics.validity(results, final)
    assert numbers["num_generations"] == 3 and numbers["num_attempts"] == 4
    assert numbers["validity"] == pytest.approx(3 / 4)
    assert numbers["attempts_per_success"] == pytest.approx(4 / 3)
    assert numbers["tokens_per_loop"] == pytest.approx((150 + 6 * 200) / 3)  # per generated loop
    assert numbers["tokens_per_detected_loop"] == pytest.approx((150 + 6 * 200) / 6)  # per looping track
    counts = metrics.status_counts(results)
    assert counts.loc[counts["status"] == "failed", "reason"].tolist() == ["no loop found"]


def test_identical_distributions_overlap_fully():
    rng = np.random.default_rng(0)
    features = {f: rng.gamma(2.0, 1.0, 300) for f in distributions.CONTINUOUS_FEATURES}
    values = pd.DataFrame({"unit": np.arange(300), **features})
    values[distributions.PITCH_CLASS_COLUMNS] = rng.dirichlet(np.ones(12), 300)
    table = distributions.compare_features(values, values.copy(), num_resamples=20)
    assert np.allclose(table["overlap"], 1.0)
    assert np.allclose(table["kl"], 0.0, atol=1e-9)
    shifted = values.assign(velocity=values["velocity"] + 100)
    far = distributions.compare_features(shifted, values, num_resamples=0)
    assert far.loc["velocity", "overlap"] < 0.01 and far.loc["velocity", "kl"] > 5


def test_track_features_of_a_known_score():
    rows = distributions.score_features(loop_score(0, num_bars=4), unit="a")
    piano, kit = rows
    assert piano["ioi_beats"] == pytest.approx(1.0) and piano["note_density"] == pytest.approx(1.0, rel=0.05)
    assert piano["polyphony"] == pytest.approx(1.0)
    assert sum(piano[c] for c in distributions.PITCH_CLASS_COLUMNS) == pytest.approx(1.0)
    assert np.isnan(kit["pitch_range"]) and kit["velocity"] == 100


def test_seam_check_passes_a_continuing_loop_and_fails_a_broken_one():
    from mmmlib.data.loops import detect_loops

    good = loopability.file_loops(loop_score(2, drums=False), [0], 4, detect_loops)[0]
    broken = loopability.file_loops(loop_score(2, drums=False, last_bar_pitch=80), [0], 4, detect_loops)[0]
    assert good["has_loop"] and good["seam_ok"] == 1.0
    assert broken["has_loop"] and broken["seam_ok"] == 0.0


# --------------------------------------------------------------------------- outputs
def test_figures_are_written(tmp_path):
    requested = np.tile([0, 2, 4], 10)
    frame = pd.concat([fidelity_frame(requested, requested), baseline_frame(np.full(6, 2))])
    fid = metrics.control_fidelity(frame, "nomml", num_resamples=20)
    loops = pd.DataFrame({"unit": ["tracks", "files", "seam"], "n": [3, 2, 1], "share": [0.5, 1.0, np.nan],
                          "share_ci": [(0.2, 0.8), (1.0, 1.0), (np.nan, np.nan)]}).set_index("unit")
    eval_plots.confusion_heatmap(fid.confusion, "nomml", tmp_path)
    eval_plots.accuracy_per_level(fid.per_level, "nomml", tmp_path)
    eval_plots.accuracy_by_group(fid.by_group, "nomml", tmp_path)
    eval_plots.loopability_bars(loops, tmp_path)
    eval_plots.loop_length_histogram(pd.Series([4.0, 8.0, 8.0]), tmp_path)
    names = ("nomml_confusion", "nomml_accuracy_per_level", "nomml_accuracy_by_group", "loopability",
             "loop_lengths")
    for name in names:
        for suffix in (".png", ".pdf"):
            assert (tmp_path / f"{name}{suffix}").stat().st_size > 1000, name + suffix


def test_verdict_says_plainly_when_control_does_not_beat_the_baseline():
    summary = {"nomml_exact_accuracy": 0.2, "nomml_exact_accuracy_ci": (0.1, 0.3),
               "baseline_nomml_exact_accuracy": 0.18, "baseline_nomml_exact_accuracy_ci": (0.1, 0.26),
               "nomml_gain": 0.02, "nomml_gain_ci": (-0.1, 0.14)}
    assert "does NOT clearly beat" in evaluate.verdict(summary)
    summary.update(nomml_gain_ci=(0.05, 0.2))
    assert evaluate.verdict(summary).startswith("NOMML control works")


def test_05_runs_through_papermill_and_writes_the_report(tmp_path):
    import papermill as pm

    write_run(tmp_path / "generate" / "demo")
    write_reference(tmp_path / "data")
    out_dir = tmp_path / "evaluate"
    executed = tmp_path / "05_evaluate.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(executed), progress_bar=False, kernel_name="python3", parameters={
        "source": str(tmp_path / "generate"), "label": "demo", "reference_dir": str(tmp_path / "data"),
        "output_dir": str(out_dir), "bootstrap": 30, "num_audio": 1})
    summary = json.loads((out_dir / "summary.json").read_text())
    for key in ("nomml_exact_accuracy", "nomml_exact_accuracy_ci", "nomml_near_accuracy",
                "baseline_nomml_exact_accuracy", "loopability", "validity", "num_generations"):
        assert key in summary, key
    assert summary["nomml_exact_accuracy"] == pytest.approx(17 / 18)  # 9 generations x 2 tracks, one miss
    assert summary["num_generations"] == 12 and summary["loopability"] == 1.0
    assert summary["exact_loop_share"] == 1.0 and summary["expressive_loop_share"] == 1.0
    assert summary["marked_loop_seam_share"] is None  # 04 wrote no loop files in this run
    assert "marks no loops" in summary["loop_notes"]["marked_loop_seam_share"]
    assert summary["loop_count_accuracy"] is None and "loop_count_accuracy" in summary["loop_notes"]
    loops = pd.read_csv(out_dir / "tables" / "loops.csv", index_col=0)
    assert loops.loc["exact_loop_share", "value"] == 1.0
    assert "Verdict" in (out_dir / "summary.md").read_text()
    for name in ("nomml_confusion", "nomml_accuracy_per_level", "loopability", "loop_lengths",
                 "loop_lengths_expressive", "distributions"):
        for suffix in (".png", ".pdf"):
            assert (out_dir / "figures" / f"{name}{suffix}").is_file(), name + suffix
    assert (out_dir / "params.json").is_file() and (out_dir / "tables" / "distributions.csv").is_file()
    html = tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "mmmlib.evaluation.report", "report", str(executed), str(html)], check=True)
    report = html.read_text()
    assert "Verdict" in report
    if (audio.find_soundfont() and audio.synthesizer_name()) or os.environ.get("CI"):  # make setup installs both
        assert len(list((out_dir / "audio").glob("*.wav"))) == 1
        assert report.count("data:audio/x-wav;base64,") == 1, "the loop's player is embedded in the report"


def test_05_rejects_a_missing_run_before_any_work(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="parameter `label` has no generation results"):
        pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), progress_bar=False,
                            kernel_name="python3",
                            parameters={"source": str(tmp_path), "label": "nope",
                                        "output_dir": str(tmp_path / "e")})
    assert not (tmp_path / "e").exists()
