"""The tokenizer: controls on files with known NOMML and loops, round trips, BPE, tolerant decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from miditok import TokSequence
from miditok.attribute_controls import (
    BarAttributeControl,
    BarNoteDensity,
    BarNoteDuration,
    BarOnsetPolyphony,
    BarPitchClass,
    TrackNoteDensity,
    TrackNoteDuration,
    TrackRepetition,
)
from miditok.utils import get_bars_ticks
from symusic import Score

from mmmlib.core.errors import ConfigError
from mmmlib.data.nomml import onset_levels
from mmmlib.tokens import (
    FILL_END,
    INFILL_BAR,
    ControlSwitches,
    build_tokenizer,
    control_ids,
    count_grammar_errors,
    load_tokenizer,
    roundtrip_file,
    special_ids,
    tasks_of,
    track_prompt_ids,
    train_bpe,
    vocab_table,
)
from mmmlib.tokens.controls import ScoreNotes, dominant_loop_duration, loop_count_value, loop_duration_value
from mmmlib.tokens.encoding import track_values
from mmmlib.tokens.fast_controls import bar_control_tokens, fast_version, track_control_tokens
from mmmlib.tokens.microtiming import is_on_grid, rescale_onsets
from mmmlib.tokens.stats import main
from tests.tokenizer_fixtures import REAL_CORPUS, make_data_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"), num_files=10, seed=3)


@pytest.fixture(scope="module")
def tasks(data_dir):
    return tasks_of(data_dir)


@pytest.fixture(scope="module")
def expressive():
    return build_tokenizer(expressive=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tasks):
    tok = build_tokenizer(expressive=True)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    return train_bpe(tok, path, tasks, vocab_size=1000, max_files=100, seed=0), path


def header_value(tokens: list[str], kind: str) -> str | None:
    values = [t.split("_", 1)[1] for t in tokens if t.startswith(kind + "_")]
    return values[0] if values else None


# --------------------------------------------------------------------------- controls
def test_loop_bins_and_counts():
    assert [loop_count_value(n) for n in (0, 1, 4, 5, 9)] == ["0", "1", "4", "5+", "5+"]
    assert [loop_duration_value(d) for d in (4, 5.99, 6, 8, 12, 16, 24, 31.9, 32, 64)] == [
        "0-6", "0-6", "6-8", "8-12", "12-16", "16-24", "24-32", "24-32", "32+", "32+"]
    assert dominant_loop_duration([8, 8, 16]) == "8-12"
    assert dominant_loop_duration([8, 16]) == "16-24"  # ties go to the longer bin
    assert dominant_loop_duration([]) is None


def test_controls_match_known_nomml_and_loops(expressive, data_dir, tasks):
    """NOMML and loop tokens equal data prep's values, and the synthetic ground truth."""
    manifest = pd.read_csv(data_dir / "midi" / "manifest.csv")
    tracks = pd.read_parquet(data_dir / "tracks.parquet")
    checked = 0
    for task in tasks:
        name = Path(task.path).name
        for encoded in expressive.encode_score(Score(task.path), task.loops):
            truth = manifest[(manifest["file"] == name) & (manifest["track_idx"] == encoded.track_idx)].iloc[0]
            prep = tracks[(tracks["md5"] == task.md5) & (tracks["track_idx"] == encoded.track_idx)].iloc[0]
            assert header_value(encoded.header, "ACTrackNOMML") == str(truth["expected_nomml"]) == str(prep["nomml"])
            assert header_value(encoded.header, "ACTrackLoopCount") == loop_count_value(prep["n_loops"])
            durations = task.loops.get(encoded.track_idx, np.zeros((0, 3)))[:, 2]
            assert header_value(encoded.header, "ACTrackLoopDuration") == dominant_loop_duration(durations)
            if truth["has_loop"] and prep["n_loops"] == 1:
                assert header_value(encoded.header, "ACTrackLoopDuration") == loop_duration_value(
                    truth["loop_duration_beats"])
            checked += 1
    assert checked >= 20


def test_controls_can_be_switched_off():
    tok = build_tokenizer(controls=ControlSwitches(nomml=False, loops=False, bar_pitch_class=False))
    kinds = set(control_ids(tok))
    assert "ACTrackNOMML" not in kinds and "ACTrackLoopCount" not in kinds and "ACBarPitchClass" not in kinds
    assert "ACTrackNoteDensityMin" in kinds and "ACBarNoteDensity" in kinds


def test_fast_controls_equal_miditok(expressive, tasks):
    """Same tokens as MidiTok's controls, except MidiTok skipping bars with a single note."""
    controls = [TrackRepetition(10, 4, (21, 109)), TrackNoteDensity(0, 18), TrackNoteDuration(), BarNoteDensity(18),
                BarPitchClass(), BarOnsetPolyphony(1, 6), BarNoteDuration()]
    for task in tasks[:5]:
        score = expressive.preprocess_score(Score(task.path))
        bars = get_bars_ticks(score, only_notes_onsets=True)
        for track in score.tracks:
            counts = np.bincount(np.searchsorted(bars, track.notes.numpy()["time"], "right") - 1, minlength=len(bars))
            for control in controls:
                idx = list(range(len(bars))) if isinstance(control, BarAttributeControl) else True
                ours = [str(e) + f"@{e.time}" for e in fast_version(control).compute(track, score.tpq, bars, [], idx)]
                theirs = [str(e) + f"@{e.time}" for e in control.compute(track, score.tpq, bars, [], idx)]
                extra = [e for e in ours if e not in theirs]
                assert all(e in ours for e in theirs)
                assert all(counts[bars.index(int(e.split("@")[1]))] == 1 for e in extra)


def test_controls_of_all_tracks_at_once_equal_track_by_track(expressive, tasks):
    """The encoder computes every track in one pass; MidiTok's interface one track at a time."""
    for task in tasks[:5]:
        prepared = expressive.prepare(Score(task.path), task.loops)
        score = prepared.score
        bars = get_bars_ticks(score, only_notes_onsets=True)
        values = track_values(prepared)
        notes = ScoreNotes.of(score.tracks, score.tpq, bars, values)
        headers = track_control_tokens(expressive.track_controls, notes)
        rows = bar_control_tokens(expressive.bar_controls, notes)
        for t, track in enumerate(score.tracks):
            one = [str(e) for c in expressive.track_controls for e in c.compute(track, score.tpq, bars, [], values[t])]
            assert headers[t] == one
            per_bar: dict[int, list[str]] = {}
            for control in expressive.bar_controls:
                for e in control.compute(track, score.tpq, bars, [], range(len(bars))):
                    per_bar.setdefault(bars.index(e.time), []).append(str(e))
            assert rows[t] == per_bar


# --------------------------------------------------------------------------- round trips
def nomml_rate(tok, paths) -> tuple[float, float, int]:
    rows = []
    for path in paths:
        score = Score(str(path))
        rows += [{**r, "tpq": score.ticks_per_quarter} for r in roundtrip_file(tok, score)]
    table = pd.DataFrame(rows)
    kept = float((table["nomml_before"] == table["nomml_after"]).mean())
    worst_beats = float((table["max_onset_error_ticks"] / table["tpq"]).max())
    return kept, worst_beats, int(table["num_errors"].sum())


def test_expressive_roundtrip_keeps_nomml_on_synthetic(expressive, data_dir):
    kept, worst, errors = nomml_rate(expressive, sorted((data_dir / "midi").glob("*.mid")))
    print(f"synthetic: NOMML kept {kept:.1%}, max onset error {worst:.5f} beats")
    assert kept >= 0.95
    assert worst < 1 / expressive.microtiming_resolution
    assert errors == 0


def test_expressive_roundtrip_keeps_nomml_on_real_files(expressive):
    if not REAL_CORPUS.is_dir():
        pytest.skip(f"real corpus not found at {REAL_CORPUS}")
    kept, worst, errors = nomml_rate(expressive, sorted(REAL_CORPUS.glob("*.mid")))
    print(f"real (gigamidi-tests): NOMML kept {kept:.1%}, max onset error {worst:.5f} beats")
    assert kept >= 0.95
    assert worst < 1 / expressive.microtiming_resolution
    assert errors == 0


@settings(max_examples=200, deadline=None)
@given(tpq=st.sampled_from([96, 100, 120, 220, 384, 480, 960, 1024]),
       ticks=st.lists(st.integers(0, 100_000), min_size=1, max_size=50),
       resolution=st.sampled_from([192, 384, 480]))
def test_rescaled_onsets_keep_their_grid_class(tpq, ticks, resolution):
    ticks = np.asarray(ticks)
    assert np.array_equal(is_on_grid(ticks, tpq), onset_levels(ticks, tpq) < 12)
    new = rescale_onsets(ticks, tpq, resolution)
    assert np.array_equal(is_on_grid(ticks, tpq), is_on_grid(new, resolution))
    assert np.all(np.abs(new - ticks * resolution / tpq) < 1)


def test_non_expressive_roundtrip_reproduces_notes_at_tokenizer_resolution(tasks):
    tok = build_tokenizer(expressive=False)
    for task in tasks[:6]:
        score = Score(task.path)
        quantized = tok.preprocess_score(score)
        encoded = tok.encode_score(score)
        for et, qt in zip(encoded, quantized.tracks, strict=True):
            decoded = tok.decode_ids(tok.tokens_to_ids(et.tokens()))
            assert decoded.num_errors == 0
            got = decoded.score.tracks[0].notes.numpy()
            want = qt.notes.numpy()
            factor = decoded.score.ticks_per_quarter / quantized.ticks_per_quarter
            got_keys = sorted(zip(got["time"], got["pitch"], got["velocity"], got["duration"], strict=False))
            want_keys = sorted(zip((want["time"] * factor).astype(int), want["pitch"], want["velocity"],
                                   (want["duration"] * factor).astype(int), strict=False))
            assert got_keys == want_keys


def test_miditok_api_still_works(expressive, tasks):
    score = Score(tasks[0].path)
    seq = expressive.encode(score)
    assert isinstance(seq, TokSequence) and seq.tokens[0] == "Track_Start"
    decoded = expressive.decode(seq)
    assert sum(len(t.notes) for t in decoded.tracks) == sum(len(t.notes) for t in score.tracks)


def test_encoder_output_follows_the_grammar(expressive, tasks):
    for task in tasks[:5]:
        for track in expressive.encode_score(Score(task.path), task.loops):
            assert count_grammar_errors(expressive, track.tokens()) == 0


# --------------------------------------------------------------------------- BPE, ids, tables
def test_bpe_save_load_identity(trained, tasks, tmp_path):
    tok, path = trained
    assert len(tok) == 1000 and tok.is_trained
    loaded = load_tokenizer(path)
    assert len(loaded) == len(tok) and loaded.pad_token_id == tok.pad_token_id == 0
    assert loaded.id_tokens() == tok.id_tokens()
    tokens = [t for track in tok.encode_score(Score(tasks[0].path)) for t in track.tokens()]
    assert loaded.tokens_to_ids(tokens) == tok.tokens_to_ids(tokens)
    assert len(tok.tokens_to_ids(tokens)) < len(tokens)  # BPE compresses
    again = train_bpe(build_tokenizer(), tmp_path / "again.json", list(tasks), 1000, 100, 0, workers=2)
    assert again.id_tokens() == tok.id_tokens()  # deterministic, whatever the number of workers
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_single_tokens_keep_their_base_ids_after_bpe(trained):
    tok, _ = trained
    table = tok.id_tokens()
    assert all(table[i] == (token,) for token, i in tok.vocab.items())
    ids = special_ids(tok)
    assert table[ids["Track_Start"]] == ("Track_Start",) and table[ids["Infill_Bar"]] == ("Infill_Bar",)


def test_vocab_table_and_prompt(trained):
    tok, _ = trained
    table = vocab_table(tok)
    assert len(table) == len(tok)
    assert table["is_control"].sum() == sum(len(v) for v in control_ids(tok).values())
    assert not table[table["num_tokens"] > 1]["tokens"].str.contains("AC|Infill|Track_|FillBar|Program").any()
    prompt = track_prompt_ids(tok, 33, {"NOMML": 12, "ACTrackLoopCount": "2", "LoopDuration": "6-8"})
    assert [tok.id_tokens()[i][0] for i in prompt] == [
        "Track_Start", "Program_33", "ACTrackNOMML_12", "ACTrackLoopCount_2", "ACTrackLoopDuration_6-8"]
    with pytest.raises(ConfigError, match="controls"):
        track_prompt_ids(tok, 0, {"NOMML": 13})
    with pytest.raises(ConfigError, match="program"):
        track_prompt_ids(tok, 200)


# --------------------------------------------------------------------------- tolerant decoding
def note_rows(track) -> list[tuple]:
    """A decoded track's notes as sorted ``(time, duration, pitch, velocity)`` rows, with its program."""
    notes = track.notes.numpy()
    rows = zip(notes["time"].tolist(), notes["duration"].tolist(), notes["pitch"].tolist(),
               notes["velocity"].tolist(), strict=True)
    return [(track.program, track.is_drum), *sorted(rows)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(-3, 1005), max_size=300))
def test_decoding_random_ids_never_raises_and_counts_unknown_ids(trained, ids):
    tok, _ = trained
    result = tok.decode_ids(ids)
    assert result.score.ticks_per_quarter == tok.output_tpq
    unknown = sum(1 for i in ids if not 0 <= i < len(tok))
    assert result.num_errors >= unknown  # every id outside the vocabulary is reported
    tokens, _ = tok.ids_to_tokens(ids)
    assert len(result.score.tracks) <= tokens.count("Track_Start")  # no track out of nowhere


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_sequences_report_errors_and_keep_the_intact_tracks(trained, tasks, data):
    """One bad id inside one track: > 0 errors, every other track decodes to the same notes."""
    tok, _ = trained
    per_track = [tok.tokens_to_ids(t.tokens()) for t in tok.encode_score(Score(tasks[1].path))]
    whole = tok.decode_ids([i for ids in per_track for i in ids])
    assert whole.num_errors == 0 and len(whole.score.tracks) == len(per_track)
    damaged = data.draw(st.integers(0, len(per_track) - 1))
    where = data.draw(st.integers(1, len(per_track[damaged]) - 1))  # after Track_Start, before Track_End
    bad = data.draw(st.sampled_from([len(tok) + 5, tok.vocab[FILL_END], tok.vocab[INFILL_BAR]]))
    ids = [list(track) for track in per_track]
    ids[damaged].insert(where, bad)
    result = tok.decode_ids([i for track in ids for i in track])
    assert result.num_errors > 0
    before, after = whole.score.tracks, result.score.tracks
    assert [note_rows(t) for t in after[:damaged]] == [note_rows(t) for t in before[:damaged]]
    tail = len(per_track) - damaged - 1
    if tail:
        assert [note_rows(t) for t in after[-tail:]] == [note_rows(t) for t in before[-tail:]]
    if bad != tok.vocab[INFILL_BAR]:  # the bad id is dropped and nothing else moves
        assert [note_rows(t) for t in after] == [note_rows(t) for t in before]


def test_malformed_sequences_decode_what_they_can(expressive, tasks):
    tokens = [t for track in expressive.encode_score(Score(tasks[0].path)) for t in track.tokens()]
    whole = expressive.decode_tokens(tokens)
    assert whole.num_errors == 0
    cut = expressive.decode_tokens(tokens[: len(tokens) // 2])  # generation stopped mid-track
    assert 0 < sum(len(t.notes) for t in cut.score.tracks) < sum(len(t.notes) for t in whole.score.tracks)
    placeholder = expressive.decode_tokens(["Infill_Bar", *tokens, "FillBar_Start"])
    assert placeholder.num_errors >= 2


def test_roundtrip_cli_prints_one_json_per_track(trained, tasks, capsys):
    _, path = trained
    assert main(["roundtrip", "--tokenizer", str(path), tasks[0].path]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(Score(tasks[0].path).tracks)
    assert set(lines[0]) == {"file", "track_idx", "nomml_before", "nomml_after", "notes_before", "notes_after",
                             "max_onset_error_ticks"}
    assert all(line["nomml_before"] == line["nomml_after"] for line in lines)
