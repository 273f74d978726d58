"""02 in the published dialect: base vocabulary, BPE file, training samples, loops, controls."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Score, Tempo, TimeSignature, Track

from mmmlib.core.errors import ConfigError
from mmmlib.tokens import build_splits, load_any_tokenizer, load_tokens, tasks_of
from mmmlib.tokens.published import load_published
from mmmlib.tokens.published.build import (
    SPECIAL_TOKENS,
    base_vocabulary,
    byte_of,
    dialect_config,
    tokenizer_file,
    train_bpe_model,
    write_tokenizer_file,
)
from mmmlib.tokens.published_build import load_frozen_published, roundtrip_published, train_published_bpe
from mmmlib.tokens.published_samples import (
    augmented_scores,
    control_of,
    encode_tracks,
    file_samples,
    loops_inside,
    loops_of_task,
    slice_score,
)
from mmmlib.tokens.samples import SampleOptions
from tests.published_fixtures import TOKENIZER, needs_published
from tests.tokenizer_fixtures import make_data_dir

LOOP_START, LOOP_END = "Loop_Start", "Loop_End"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"), num_files=8, seed=3)


@pytest.fixture(scope="module")
def tasks(data_dir):
    return tasks_of(data_dir)


@pytest.fixture(scope="module")
def tok(tmp_path_factory, tasks):
    path = tmp_path_factory.mktemp("run") / "tokenizer.json"
    return train_published_bpe(path, tasks, vocab_size=1200, max_files=100, seed=0)


def looped_score(tpq: int = 96, bars: int = 8) -> Score:
    """Two tracks in 4/4 at 100 qpm; the piano repeats a one-bar pattern in bars 2-5."""
    score = Score(tpq)
    score.tempos = [Tempo(0, qpm=100.0)]
    score.time_signatures = [TimeSignature(0, 4, 4)]
    piano, bass = Track(program=0), Track(program=33)
    bar = 4 * tpq
    for b in range(bars):
        pattern = [60, 64, 67, 72] if 1 <= b <= 4 else [62 + b, 65, 69, 71 - b]
        for k, pitch in enumerate(pattern):
            piano.notes.append(Note(b * bar + k * tpq, tpq // 2, pitch, 80))
        bass.notes.append(Note(b * bar, 2 * tpq, 36 + b % 3, 90))
    score.tracks = [piano, bass]
    return score


def test_base_vocabulary_is_the_dialects_layout():
    tokens = base_vocabulary(dialect_config())
    assert len(tokens) == 811 and len(set(tokens)) == 811
    assert tokens[:len(SPECIAL_TOKENS)] == SPECIAL_TOKENS and tokens[9] == "Bar_None"
    assert tokens.index("Loop_Start") + 1 == tokens.index("Loop_End")
    assert [t for t in tokens if t.startswith("ACMedianMetricLevel")] == [f"ACMedianMetricLevel_{i}" for i in range(13)]
    assert [t for t in tokens if t.startswith("ACLoopCount")][-1] == "ACLoopCount_5+"
    assert sum(t.startswith("ACLoopDurationQuantile") for t in tokens) == 7
    assert sum(t.startswith("Delta_") for t in tokens) == 80 and sum(t.startswith("Velocity_") for t in tokens) == 88


@needs_published
def test_base_vocabulary_equals_the_published_file():
    raw = json.loads(TOKENIZER.read_text())
    published = sorted(raw["_vocab_base"], key=raw["_vocab_base"].get)
    assert base_vocabulary(dialect_config()) == published
    assert all(raw["_vocab_base_byte_to_token"][byte_of(i)] == t for i, t in enumerate(published))
    config = dialect_config()
    assert {k: v for k, v in raw["config"].items() if k != "chord_maps"} == \
        {k: v for k, v in config.items() if k != "chord_maps"}


def test_trained_file_loads_and_round_trips(tok, tmp_path):
    assert len(tok) == 1200
    assert [tok.id_tokens()[i] for i in range(811)] == [(t,) for t in base_vocabulary(dialect_config())]
    assert tok.id_tokens()[811] == ()  # the id of ``▁`` alone
    merged = [pieces for pieces in tok.id_tokens() if len(pieces) > 1]
    assert len(merged) > 100 and any(p[0] == "Bar_None" for p in merged)
    tracks, _ = encode_tracks(tok, looped_score(), [])
    tokens = ["Track_Start", *tracks[0].header, *[t for bar in tracks[0].bars for t in bar], "Track_End"]
    ids = tok.tokens_to_ids(tokens)
    assert tok.ids_to_tokens(ids) == tokens and len(ids) < len(tokens)
    # no BPE: every base token its own id
    flat = write_tokenizer_file(tmp_path / "flat.json", tokenizer_file(
        dialect_config(), train_bpe_model([], 0, 811, SPECIAL_TOKENS)))
    assert len(load_published(flat)) == 812


def test_frozen_file_is_checked(tok, tmp_path, tasks):
    path = tmp_path / "tokenizer.json"
    train_published_bpe(path, tasks, vocab_size=900, max_files=100, seed=0)
    assert len(load_frozen_published(path, 900)) == 900
    with pytest.raises(ConfigError, match="vocab_size"):
        load_frozen_published(path, 1200)
    with pytest.raises(ConfigError, match="base_tokenizer"):
        train_published_bpe(tmp_path / "x.json", tasks, 0, 10, 0, base_tokenizer=tmp_path / "missing.json")


@needs_published
def test_base_tokenizer_freezes_the_published_file_as_it_is(tmp_path, tasks):
    tok = train_published_bpe(tmp_path / "tokenizer.json", tasks, 2000, 10, 0, base_tokenizer=TOKENIZER)
    assert len(tok) == 16000 and (tmp_path / "tokenizer.json").read_bytes() == TOKENIZER.read_bytes()


def test_loops_become_paired_markers_and_loop_controls(tok):
    score = looped_score()
    bar = 4 * score.ticks_per_quarter
    tracks, bar_ticks = encode_tracks(tok, score, [{"track_idx": 0, "start_tick": bar, "end_tick": 5 * bar}])
    piano = [t for bar_tokens in tracks[0].bars for t in bar_tokens]
    assert piano.count(LOOP_START) == 1 and piano.count(LOOP_END) == 1
    assert piano.index(LOOP_START) < piano.index(LOOP_END)
    assert "ACLoopCount_1" in tracks[0].header and "ACLoopCount_0" in tracks[1].header
    assert any(t.startswith("ACMedianMetricLevel_") for t in tracks[0].header)
    assert len(bar_ticks) >= 8 and bar_ticks[1] == 4 * 1920


def test_samples_fit_keep_loops_paired_and_mask_controls(tok, tasks):
    opts = SampleOptions(max_seq_len=256)
    markers, count = Counter(), 0
    for task in tasks:
        samples, _ = file_samples(tok, Score(task.path), loops_of_task(task.loops), np.random.default_rng(0), opts)
        for sample in samples:
            count += 1
            assert len(sample.input_ids) <= 256
            tokens_per_id = [tok.id_tokens()[i] for i in sample.input_ids]
            for pieces, kept in zip(tokens_per_id, sample.loss_mask, strict=True):
                given = bool(pieces) and all(t.startswith("AC") or t in ("Infill_Bar", "Infill_Track") for t in pieces)
                assert kept == (0 if given else 1)
            tokens = tok.ids_to_tokens(sample.input_ids)
            markers.update(t for t in tokens if t.startswith("Loop_"))
            # one FillBar span holding one bar per Infill_Bar
            if sample.infill_bars:
                span = tokens[tokens.index("FillBar_Start"):]
                assert tokens.count("Infill_Bar") == sample.infill_bars == span.count("Bar_None")
                assert tokens.count("FillBar_Start") == 1 and span[-1] == "FillBar_End"
    assert count > 8 and markers[LOOP_START] > 0 and markers[LOOP_START] == markers[LOOP_END]


def test_control_recipes_and_excluded_controls(tok):
    score = looped_score()
    loops = [{"track_idx": 0, "start_tick": 384, "end_tick": 5 * 384}]

    def headers(mix, excluded=()):
        opts = SampleOptions(max_seq_len=2048, infill_fraction=0.0, min_track_fraction=1.0, control_mix=mix,
                             excluded_controls=excluded)
        samples, _ = file_samples(tok, score, loops, np.random.default_rng(1), opts)
        tokens = [t for s in samples for t in tok.ids_to_tokens(s.input_ids)]
        return {control_of(t) for t in tokens if t.startswith("AC")}

    assert headers((("none", 1.0),)) == set()
    assert headers((("nomml", 1.0),)) == {"ACMedianMetricLevel"}
    assert headers((("nomml_loops", 1.0),)) == {"ACMedianMetricLevel", "ACLoopCount", "ACLoopDurationQuantile"}
    everything = headers((("all", 1.0),))
    assert {"ACTrackOnsetPolyphony", "ACTrackNoteDensity", "ACTrackNoteDuration", "ACTrackRepetition"} < everything
    assert "ACLoopCount" not in headers((("all", 1.0),), ("ACLoopCount", "ACLoopDurationQuantile"))


def test_chunks_describe_themselves(tok):
    """A chunk cut from the middle of a file restates tempo and time signature and keeps the
    loops inside it only."""
    score = looped_score(bars=8)
    bar = 4 * score.ticks_per_quarter
    part = slice_score(score, 4 * bar, 8 * bar, [1, 0])
    assert part.tempos[0].time == 0 and round(part.tempos[0].qpm) == 100
    assert (part.time_signatures[0].numerator, part.time_signatures[0].denominator) == (4, 4)
    assert part.tracks[0].program == 33 and min(n.time for n in part.tracks[1].notes) == 0
    assert len(part.tracks[1].notes) == 16
    loops = [{"track_idx": 0, "start_tick": bar, "end_tick": 5 * bar},
             {"track_idx": 0, "start_tick": 4 * bar, "end_tick": 6 * bar}]
    assert loops_inside(loops, 4 * bar, 8 * bar, [1, 0]) == [{"track_idx": 1, "start_tick": 0, "end_tick": 2 * bar}]


def test_a_transposed_copy_keeps_its_loops(tok):
    score = looped_score()
    loops = [{"track_idx": 0, "start_tick": 384, "end_tick": 5 * 384}]
    (copy, semitones, _), = augmented_scores(score, (21, 109), np.random.default_rng(0), 1)
    assert semitones != 0
    assert [n.pitch - semitones for n in copy.tracks[0].notes] == [n.pitch for n in score.tracks[0].notes]
    before, _ = encode_tracks(tok, score, loops)
    after, _ = encode_tracks(tok, copy, loops)
    marks = [[i for i, t in enumerate(b) if t.startswith("Loop_")] for b in before[0].bars]
    assert marks == [[i for i, t in enumerate(b) if t.startswith("Loop_")] for b in after[0].bars]
    assert sum(map(len, marks)) == 2


def test_roundtrip_keeps_every_note(tok):
    rows = roundtrip_published(tok, looped_score(), {0: np.array([[384.0, 1920.0, 16.0]])})
    assert [r["notes_before"] for r in rows] == [r["notes_after"] for r in rows] == [32, 8]
    assert all(r["nomml_before"] == r["nomml_after"] for r in rows)
    assert all(r["max_onset_error_ticks"] == 0 for r in rows)


def test_build_splits_in_the_published_dialect(tok, tasks, tmp_path):
    path = tmp_path / "tokenizer.json"
    train_published_bpe(path, tasks, vocab_size=1200, max_files=100, seed=0)
    report = build_splits(path, tasks, tmp_path / "tokens", SampleOptions(max_seq_len=512), seed=0, augment_copies=1)
    assert (report["error"] == "").all() and report["samples"].sum() > 0
    assert isinstance(load_any_tokenizer(tmp_path / "tokens" / "tokenizer.json"), type(tok))
    train = load_tokens(tmp_path, "train")
    assert max(max(r) for r in train["input_ids"]) < 1200 and set(train["transpose"]) - {0}


def test_measured_bar_lengths_are_the_ids_of_each_bar(tok):
    from mmmlib.tokens.published_samples import measure

    tracks, _ = encode_tracks(tok, looped_score(), [{"track_idx": 0, "start_tick": 384, "end_tick": 5 * 384}])
    headers, bars = measure(tok, tracks)
    assert headers == [len(t.header) + 2 for t in tracks]
    assert bars == [[len(tok.tokens_to_ids(bar)) for bar in t.bars] for t in tracks]


def test_samples_can_start_where_a_loop_starts(tok):
    score = looped_score(bars=8)
    bar = 4 * score.ticks_per_quarter
    loops = [{"track_idx": 0, "start_tick": 3 * bar, "end_tick": 5 * bar}]
    opts = SampleOptions(max_seq_len=4096, infill_fraction=0.0, min_track_fraction=1.0)
    first = [file_samples(tok, score, loops, np.random.default_rng(seed), opts)[0][0].bar_start for seed in range(5)]
    assert first == [0] * 5
    aligned = SampleOptions(max_seq_len=4096, infill_fraction=0.0, min_track_fraction=1.0, loop_start_fraction=1.0,
                            control_mix=(("all", 1.0),))
    samples, _ = file_samples(tok, score, loops, np.random.default_rng(0), aligned)
    assert [(s.bar_start, s.bar_end) for s in samples] == [(3, 8)]
    tokens = tok.ids_to_tokens(samples[0].input_ids)
    assert tokens.count("Loop_Start") == 1 and "ACLoopCount_1" in tokens  # the loop is inside, and said
    assert file_samples(tok, score, [], np.random.default_rng(0), aligned)[0][0].bar_start == 0  # no loop: bar 0


def test_roundtrip_cli_reads_a_published_dialect_file(tmp_path, capsys):
    from mmmlib.tokens.stats import main

    path = write_tokenizer_file(tmp_path / "tokenizer.json", tokenizer_file(
        dialect_config(), train_bpe_model([], 0, 811, SPECIAL_TOKENS)))
    midi = tmp_path / "looped.mid"
    looped_score().dump_midi(str(midi))
    assert main(["roundtrip", "--tokenizer", str(path), str(midi)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["notes_after"] for r in rows] == [r["notes_before"] for r in rows] == [32, 8]
