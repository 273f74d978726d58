"""Training samples: chunk sizes, loss masks, infill, augmentation, shards, reproducibility, notebook 02."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import papermill as pm
import pytest
from symusic import Score

from mmmlib.core.params import ParamError
from mmmlib.tokens import dataset
from mmmlib.tokens.params import TokenizerParams
from mmmlib.tokens.samples import (
    SampleOptions,
    augmentations,
    file_samples,
    plan_chunks,
    valid_transpositions,
)
from mmmlib.tokens.tokenizer import FILL_START, INFILL_BAR, build_tokenizer
from tests.tokenizer_fixtures import REAL_CORPUS, make_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "02_tokenizer.ipynb"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"), num_files=10, seed=5)


@pytest.fixture(scope="module")
def tasks(data_dir):
    return dataset.tasks_of(data_dir)


@pytest.fixture(scope="module")
def tok(tmp_path_factory, tasks):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    return dataset.train_bpe(build_tokenizer(), path, tasks, vocab_size=1000, max_files=100, seed=0)


def samples_of(tok, task, opts, seed=0):
    prepared = tok.prepare(Score(task.path), task.loops)
    return file_samples(tok, prepared, np.random.default_rng(seed), opts)


def test_chunks_never_exceed_max_seq_len(tok, tasks):
    opts = SampleOptions(max_seq_len=200)
    total = 0
    for task in tasks[:6]:
        samples, _ = samples_of(tok, task, opts)
        assert all(len(s.input_ids) <= 200 for s in samples)
        assert len({(s.bar_start, s.bar_end) for s in samples}) == len(samples)
        total += len(samples)
    assert total > 6  # files were really cut


def test_chunks_of_a_long_real_file(tok):
    if not REAL_CORPUS.is_dir():
        pytest.skip(f"real corpus not found at {REAL_CORPUS}")
    path = REAL_CORPUS / "Maestro_1.mid"
    prepared = tok.prepare(Score(str(path)))
    samples, _ = file_samples(tok, prepared, np.random.default_rng(0), SampleOptions(max_seq_len=1024))
    assert len(samples) > 5 and max(len(s.input_ids) for s in samples) <= 1024


def test_plan_chunks_cover_bars_in_order():
    rng = np.random.default_rng(0)
    bars = [[30] * 20, [50] * 18, [10] * 20]
    chunks, skipped = plan_chunks([5, 5, 5], bars, rng, SampleOptions(max_seq_len=300))
    assert skipped == 0 and chunks[0][0] == 0 and chunks[-1][1] == 20
    assert all(a[1] == b[0] for a, b in zip(chunks[:-1], chunks[1:], strict=False))
    assert all(0 < len(tracks) <= 3 for _, _, tracks in chunks)


def test_loss_mask_is_zero_exactly_on_controls_and_placeholders(tok, tasks):
    table = tok.id_tokens()
    for task in tasks[:5]:
        for sample in samples_of(tok, task, SampleOptions(max_seq_len=512, infill_fraction=0.5))[0]:
            expected = [0 if len(table[i]) == 1 and (table[i][0].startswith("AC") or table[i][0] == INFILL_BAR)
                        else 1 for i in sample.input_ids]
            assert sample.loss_mask.tolist() == expected
            assert sample.input_ids.dtype == np.int32 and sample.loss_mask.dtype == np.int8


def test_infill_samples_decode_to_the_same_music(tok, tasks):
    """Moving bars behind FillBar_Start and back loses nothing."""
    full = SampleOptions(max_seq_len=100_000, infill_fraction=1.0, track_control_prob=0.0, bar_control_prob=0.0)
    none = SampleOptions(max_seq_len=100_000, infill_fraction=0.0, track_control_prob=0.0, bar_control_prob=0.0,
                         min_track_fraction=1.0)
    for task in tasks[:4]:
        [infilled], _ = samples_of(tok, task, SampleOptions(**{**full.__dict__, "min_track_fraction": 1.0}))
        [plain], _ = samples_of(tok, task, none)
        tokens, _ = tok.ids_to_tokens(infilled.input_ids)
        assert tokens.count(INFILL_BAR) == tokens.count(FILL_START) == infilled.infill_bars > 0
        a, b = tok.decode_ids(infilled.input_ids), tok.decode_ids(plain.input_ids)
        assert a.num_errors == b.num_errors == 0
        notes = [sorted(map(tuple, np.stack(list(t.notes.numpy().values())).T.tolist())) for t in a.score.tracks]
        expected = [sorted(map(tuple, np.stack(list(t.notes.numpy().values())).T.tolist())) for t in b.score.tracks]
        assert sorted(notes) == sorted(expected)


def test_augmentation_transposes_pitched_tracks_only(tok, tasks):
    prepared = tok.prepare(Score(tasks[0].path), tasks[0].loops)
    shifts = valid_transpositions(prepared, tok.config.pitch_range)
    assert shifts and all(1 <= abs(s) <= 6 for s in shifts)
    [(variant, semitones, bins)] = augmentations(tok, prepared, np.random.default_rng(1), 1)
    assert semitones in shifts and -2 <= bins <= 2
    for before, after in zip(prepared.score.tracks, variant.score.tracks, strict=True):
        delta = after.notes.numpy()["pitch"].astype(int) - before.notes.numpy()["pitch"]
        assert np.all(delta == (0 if before.is_drum else semitones))


def test_no_transposition_pushes_notes_out_of_range(tok, tasks):
    prepared = tok.prepare(Score(tasks[0].path))
    low, high = tok.config.pitch_range
    for track in prepared.score.tracks:
        if not track.is_drum:
            track.notes[0].pitch = high - 2  # leaves room for +1, +2 only
    assert max(valid_transpositions(prepared, (low, high))) == 2


def test_splits_are_reproducible_and_independent_of_workers(tok, tasks, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    opts = SampleOptions(max_seq_len=512)
    dataset.build_splits(path, tasks, tmp_path / "w1", opts, seed=7, augment_copies=1, workers=1)
    dataset.build_splits(path, tasks, tmp_path / "w2", opts, seed=7, augment_copies=1, workers=2)
    for split in dataset.SPLITS:
        a = dataset.load_from_disk(str(tmp_path / "w1" / split))
        b = dataset.load_from_disk(str(tmp_path / "w2" / split))
        assert a["input_ids"] == b["input_ids"] and a["loss_mask"] == b["loss_mask"]
    train = dataset.load_from_disk(str(tmp_path / "w1" / "train"))
    assert set(train.column_names) >= {"input_ids", "loss_mask", "md5", "num_tokens"}
    assert any(t != 0 for t in train["transpose"])  # augmented copies in train only
    assert all(t == 0 for t in dataset.load_from_disk(str(tmp_path / "w1" / "valid"))["transpose"])


def test_shards_merge_into_the_whole(tok, data_dir, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    opts = SampleOptions(max_seq_len=512)
    for shard in range(2):
        shard_tasks = dataset.tasks_of(data_dir, shard_index=shard, num_shards=2)
        dataset.build_splits(path, shard_tasks, dataset.tokens_dir(tmp_path, shard, 2), opts, seed=1)
    assert len(dataset.load_tokens(tmp_path, "train")) > 0  # readable before the merge
    counts = dataset.merge_shards(tmp_path, 2)
    single = tmp_path / "single"
    dataset.build_splits(path, dataset.tasks_of(data_dir), single / "tokens", opts, seed=1)
    for split in dataset.SPLITS:
        merged = dataset.load_tokens(tmp_path, split)
        whole = dataset.load_tokens(single, split)
        assert counts[split] == len(merged) == len(whole)
        assert sorted(map(tuple, merged["input_ids"])) == sorted(map(tuple, whole["input_ids"]))


def test_params_are_checked(data_dir):
    good = dict(data_dir=str(data_dir), output_dir="x", vocab_size=0, bpe_max_files=10, max_seq_len=512,
                expressive=True, microtiming_resolution=192, infill_fraction=0.75, min_track_fraction=0.4,
                track_control_prob=0.75, bar_control_prob=0.5, augment=True, augment_copies=1, use_nomml=True,
                use_loops=True, use_track_note_density=True, use_track_polyphony=True, use_track_note_duration=True,
                use_track_repetition=True, use_bar_note_density=True, use_bar_polyphony=True,
                use_bar_pitch_class=True, use_bar_note_duration=True, roundtrip_files=1, workers=1, shard_index=0,
                num_shards=1, seed=0, make_figures=False)
    TokenizerParams(**good)
    for bad, name in [({"microtiming_resolution": 100}, "microtiming_resolution"), ({"vocab_size": "1k"}, "vocab_size"),
                      ({"infill_fraction": 1.5}, "infill_fraction"), ({"data_dir": "/nope"}, "data_dir")]:
        with pytest.raises(ParamError, match=name):
            TokenizerParams(**{**good, **bad})


def test_notebook_02_runs_on_tiny_params(data_dir, tmp_path):
    out = tmp_path / "run"
    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "02.ipynb"), progress_bar=False, kernel_name="python3",
                        parameters=dict(data_dir=str(data_dir), output_dir=str(out), vocab_size=950,
                                        max_seq_len=512, roundtrip_files=2, workers=1))
    assert json.loads((out / "params.json").read_text())["stage"] == "02_tokenizer"
    tok = dataset.load_tokenizer(out / "tokenizer.json")
    assert len(tok) == 950
    for split in dataset.SPLITS:
        ds = dataset.load_tokens(out, split)
        assert len(ds) > 0 and max(ds["num_tokens"]) <= 512 and max(max(r) for r in ds["input_ids"]) < 950
    for name in ("vocabulary", "sequence_lengths", "control_shares", "roundtrip_example"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert (out / "roundtrip.csv").exists() and (out / "tokenize_report.csv").exists()
