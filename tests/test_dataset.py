"""Training samples: chunk sizes, loss masks, infill, augmentation, the BPE step, shards, notebook 02."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest
from datasets import load_from_disk
from symusic import Score

from mmmlib.core.errors import ConfigError, DataError
from mmmlib.core.params import ParamError
from mmmlib.tokens import (
    FILL_START,
    INFILL_BAR,
    SPLITS,
    ControlSwitches,
    SampleOptions,
    TokenizerParams,
    augmentations,
    build_splits,
    build_tokenizer,
    dataset,
    file_samples,
    load_any_tokenizer,
    load_frozen_tokenizer,
    load_tokenizer,
    load_tokens,
    merge_shards,
    save_tokenizer,
    tasks_of,
    tokenizer_sha256,
    tokens_dir,
    train_bpe,
)
from mmmlib.tokens import bpe as bpe_module
from mmmlib.tokens.published import PublishedTokenizer
from mmmlib.tokens.samples import plan_chunks, valid_transpositions
from tests.tokenizer_fixtures import REAL_CORPUS, make_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "02_tokenizer.ipynb"
SHARD_OPTIONS = SampleOptions(max_seq_len=512)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"), num_files=10, seed=5)


@pytest.fixture(scope="module")
def tasks(data_dir):
    return tasks_of(data_dir)


@pytest.fixture(scope="module")
def frozen(tmp_path_factory, tasks) -> Path:
    """The BPE step's output: a frozen ``tokenizer.json`` (1000 ids) in a run folder."""
    path = tmp_path_factory.mktemp("run") / "tokenizer.json"
    train_bpe(build_tokenizer(), path, tasks, vocab_size=1000, max_files=100, seed=0)
    return path


@pytest.fixture(scope="module")
def tok(frozen):
    return load_tokenizer(frozen)


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
    no_controls = (("none", 1.0),)
    full = SampleOptions(max_seq_len=100_000, infill_fraction=1.0, bar_control_prob=0.0, control_mix=no_controls)
    none = SampleOptions(max_seq_len=100_000, infill_fraction=0.0, bar_control_prob=0.0, control_mix=no_controls,
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


def test_the_prompts_04_sends_are_common_training_headers(tok, tasks):
    """Each prompt shape of 04 (none; NOMML; NOMML + loops; all) is a common header, bars mostly bare."""
    from collections import Counter

    from mmmlib.tokens.controls import LOOP_COUNT_TYPE, LOOP_DURATION_TYPE, NOMML_TYPE
    from mmmlib.tokens.samples import draw_recipe, select_controls

    track = next(t for task in tasks for t in tok.encode_prepared(tok.prepare(Score(task.path), task.loops))
                 if any(x.startswith(LOOP_DURATION_TYPE) for x in t.header))  # a track with loops
    every = frozenset(x.split("_", 1)[0] for x in track.header if x.startswith("AC"))
    shapes = {frozenset(): "none", frozenset({NOMML_TYPE}): "nomml",
              frozenset({NOMML_TYPE, LOOP_COUNT_TYPE, LOOP_DURATION_TYPE}): "nomml_loops", every: "all"}
    rng, opts, counts, bars_with, bars = np.random.default_rng(0), SampleOptions(), Counter(), 0, 0
    for _ in range(2000):
        chosen = select_controls(tok, track, rng, opts, draw_recipe(rng, opts))
        counts[shapes.get(frozenset(x.split("_", 1)[0] for x in chosen.header if x.startswith("AC")), "other")] += 1
        bars_with += sum(any(x.startswith("AC") for x in bar) for bar in chosen.bars)
        bars += len(chosen.bars)
    assert len(every) >= 5
    for shape in ("none", "nomml", "nomml_loops", "all"):
        assert counts[shape] / 2000 > 0.18, counts  # at least their 0.2 share (plus the independent draws)
    assert 0.15 < bars_with / bars < 0.3  # bar controls on about a quarter of bars, as bare as at generation


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


def test_splits_are_reproducible_and_independent_of_workers(frozen, tasks, tmp_path):
    build_splits(frozen, tasks, tmp_path / "w1", SHARD_OPTIONS, seed=7, augment_copies=1, workers=1)
    build_splits(frozen, tasks, tmp_path / "w2", SHARD_OPTIONS, seed=7, augment_copies=1, workers=2)
    for split in SPLITS:
        a = load_from_disk(str(tmp_path / "w1" / split))
        b = load_from_disk(str(tmp_path / "w2" / split))
        assert a["input_ids"] == b["input_ids"] and a["loss_mask"] == b["loss_mask"]
    train = load_from_disk(str(tmp_path / "w1" / "train"))
    assert set(train.column_names) >= {"input_ids", "loss_mask", "md5", "num_tokens"}
    assert any(t != 0 for t in train["transpose"])  # augmented copies in train only
    assert all(t == 0 for t in load_from_disk(str(tmp_path / "w1" / "valid"))["transpose"])
    # the run keeps the tokenizer it was built with, and its sha256
    assert (tmp_path / "w1" / "tokenizer.json").read_bytes() == frozen.read_bytes()
    info = json.loads((tmp_path / "w1" / "build.json").read_text())
    assert info["tokenizer_sha256"] == tokenizer_sha256(frozen) and info["num_files"] == len(tasks)


# --------------------------------------------------------------------------- the BPE step
def test_bpe_step_writes_the_shared_tokenizer_once_when_trained(tasks, tmp_path, monkeypatch):
    shared = tmp_path / "run" / "tokenizer.json"
    writes = []

    def spy(tok, path):
        writes.append((Path(path), tok.is_trained, shared.exists()))
        return save_tokenizer(tok, path)

    monkeypatch.setattr(bpe_module, "save_tokenizer", spy)
    tok = train_bpe(build_tokenizer(), shared, tasks, vocab_size=950, max_files=100, seed=0, workers=2)
    assert [w for w in writes if w[0] == shared] == [(shared, True, False)]
    assert all(not exists for _, _, exists in writes[:-1])  # the workers' copy was private
    assert len(load_tokenizer(shared)) == len(tok) == 950
    assert sorted(p.name for p in shared.parent.iterdir()) == ["tokenizer.json"]  # no temporary left


def test_bpe_cli_trains_the_same_tokenizer(data_dir, frozen, tmp_path, capsys):
    assert dataset.main(["bpe", str(data_dir), str(tmp_path), "--vocab-size", "1000", "--max-files", "100",
                         "--dialect", "mmmlib"]) == 0
    assert tokenizer_sha256(tmp_path / "tokenizer.json") == tokenizer_sha256(frozen)
    assert tokenizer_sha256(frozen) in capsys.readouterr().out
    with pytest.raises(SystemExit) as help_exit:
        dataset.main(["--help"])
    assert help_exit.value.code == 0
    assert "bpe" in capsys.readouterr().out


def test_frozen_tokenizer_is_checked_against_the_readers_settings(frozen, tmp_path):
    with pytest.raises(DataError, match="BPE step"):
        load_frozen_tokenizer(tmp_path / "tokenizer.json")
    assert load_frozen_tokenizer(frozen, like=build_tokenizer(), vocab_size=1000).id_tokens() == \
        load_tokenizer(frozen).id_tokens()
    with pytest.raises(ConfigError, match="expressive"):
        load_frozen_tokenizer(frozen, like=build_tokenizer(expressive=False))
    with pytest.raises(ConfigError, match="controls"):
        load_frozen_tokenizer(frozen, like=build_tokenizer(controls=ControlSwitches(nomml=False)))
    with pytest.raises(ConfigError, match="vocab_size"):
        load_frozen_tokenizer(frozen, like=build_tokenizer(), vocab_size=0)


# --------------------------------------------------------------------------- shards
def build_shard(tokenizer_path: Path, data_dir: Path, output_dir: Path, shard: int, num_shards: int,
                barrier=None) -> None:
    """One task of a SLURM array: its share of the files, from the frozen tokenizer."""
    if barrier is not None:
        barrier.wait(timeout=60)  # both shards start together
    build_splits(tokenizer_path, tasks_of(data_dir, shard_index=shard, num_shards=num_shards),
                 tokens_dir(output_dir, shard, num_shards), SHARD_OPTIONS, seed=1, augment_copies=1)


def test_concurrent_shards_merge_into_exactly_the_one_process_run(frozen, data_dir, tmp_path):
    output_dir = frozen.parent / "sharded"
    output_dir.mkdir()
    shared = shutil.copyfile(frozen, output_dir / "tokenizer.json")
    before = tokenizer_sha256(shared)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    shards = [context.Process(target=build_shard, args=(shared, data_dir, output_dir, i, 2, barrier))
              for i in range(2)]
    for process in shards:
        process.start()
    for process in shards:
        process.join(timeout=120)
    assert [p.exitcode for p in shards] == [0, 0]
    assert tokenizer_sha256(shared) == before  # shards only read the frozen tokenizer
    assert len(load_tokens(output_dir, "train")) > 0  # readable before the merge
    assert dataset.main(["merge", str(output_dir), "--num-shards", "2"]) == 0
    single = tmp_path / "single"
    build_splits(shared, tasks_of(data_dir), tokens_dir(single), SHARD_OPTIONS, seed=1, augment_copies=1)
    for split in SPLITS:
        merged, whole = load_tokens(output_dir, split), load_tokens(single, split)
        assert len(whole) > 0
        assert merged.to_dict() == whole.to_dict()  # same rows, same order, every column
    info = json.loads((output_dir / "tokens" / "build.json").read_text())
    assert info["tokenizer_sha256"] == before and info["num_files"] == len(tasks_of(data_dir))


def test_merge_refuses_shards_of_different_tokenizers(frozen, data_dir, tmp_path):
    shared = shutil.copyfile(frozen, tmp_path / "tokenizer.json")
    other = save_tokenizer(build_tokenizer(), tmp_path / "other" / "tokenizer.json")  # no BPE
    build_shard(shared, data_dir, tmp_path, 0, 2)
    build_shard(other, data_dir, tmp_path, 1, 2)
    with pytest.raises(DataError, match="different tokenizers"):
        merge_shards(tmp_path, 2)
    build_shard(shared, data_dir, tmp_path, 1, 2)
    shutil.copyfile(other, shared)  # the shared tokenizer was replaced after the shards ran
    with pytest.raises(DataError, match="not the tokenizer the shards were built with"):
        merge_shards(tmp_path, 2)
    shutil.copyfile(frozen, shared)
    assert sum(merge_shards(tmp_path, 2).values()) > 0
    with pytest.raises(ConfigError, match="num_shards"):
        merge_shards(tmp_path, 1)


# --------------------------------------------------------------------------- notebook 02
GOOD_PARAMS = dict(dialect="mmmlib", base_tokenizer="", loop_start_fraction=0.0, vocab_size=0, bpe_max_files=10, max_seq_len=512, expressive=True, microtiming_resolution=192,
                   infill_fraction=0.75, min_track_fraction=0.4, track_control_prob=0.75, bar_control_prob=0.25,
                   control_mix={"none": 0.2, "nomml": 0.2, "nomml_loops": 0.2, "all": 0.2, "independent": 0.2},
                   augment=True, augment_copies=1, use_nomml=True, use_loops=True, use_track_note_density=True,
                   use_track_polyphony=True, use_track_note_duration=True, use_track_repetition=True,
                   use_bar_note_density=True, use_bar_polyphony=True, use_bar_pitch_class=True,
                   use_bar_note_duration=True, roundtrip_files=1, workers=1, step="all", shard_index=0,
                   num_shards=1, seed=0, make_figures=False)


def test_params_are_checked(data_dir, frozen):
    good = dict(GOOD_PARAMS, data_dir=str(data_dir), output_dir="x")
    TokenizerParams(**good)
    for bad, name in [({"microtiming_resolution": 100}, "microtiming_resolution"), ({"vocab_size": "1k"}, "vocab_size"),
                      ({"infill_fraction": 1.5}, "infill_fraction"), ({"data_dir": "/nope"}, "data_dir"),
                      ({"step": "tokens"}, "step"), ({"num_shards": 2}, "step"), ({"step": "samples"}, "bpe step"),
                      ({"dialect": "remi"}, "dialect"), ({"base_tokenizer": "x.json"}, "base_tokenizer"),
                      ({"loop_start_fraction": 0.5}, "loop_start_fraction"),
                      ({"dialect": "published"}, "bar_control_prob"),
                      ({"dialect": "published", "bar_control_prob": 0.0, "expressive": False}, "expressive"),
                      ({"dialect": "published", "bar_control_prob": 0.0, "base_tokenizer": "/nope.json"},
                       "base_tokenizer")]:
        with pytest.raises(ParamError, match=name):
            TokenizerParams(**{**good, **bad})
    sharded = TokenizerParams(**{**good, "output_dir": str(frozen.parent), "step": "samples", "num_shards": 2,
                                 "shard_index": 1})
    assert sharded.run_dir == frozen.parent / "tokens" / "shards" / "shard_0001"
    with pytest.raises(ParamError, match="parameter `use_"), sharded.param_errors():
        load_frozen_tokenizer(frozen, like=build_tokenizer(controls=ControlSwitches(loops=False)))


@pytest.mark.parametrize("dialect", ["published", "mmmlib"])
def test_notebook_02_runs_on_tiny_params(data_dir, tmp_path, dialect):
    out = tmp_path / "run"
    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "02.ipynb"), progress_bar=False, kernel_name="python3",
                        parameters=dict(data_dir=str(data_dir), output_dir=str(out), vocab_size=950, dialect=dialect,
                                        max_seq_len=512, roundtrip_files=2, workers=1))
    assert json.loads((out / "params.json").read_text())["stage"] == "02_tokenizer"
    tok = load_any_tokenizer(out / "tokenizer.json")
    assert len(tok) == 950 and isinstance(tok, PublishedTokenizer) == (dialect == "published")
    for split in SPLITS:
        ds = load_tokens(out, split)
        assert len(ds) > 0 and max(ds["num_tokens"]) <= 512 and max(max(r) for r in ds["input_ids"]) < 950
    for name in ("vocabulary", "sequence_lengths", "control_shares", "roundtrip_example"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    roundtrip = pd.read_csv(out / "roundtrip.csv")
    assert len(roundtrip) and (roundtrip["notes_after"] == roundtrip["notes_before"]).all()
    assert (out / "roundtrip.csv").exists() and (out / "tokenize_report.csv").exists()
    assert json.loads((out / "tokens" / "build.json").read_text())["tokenizer_sha256"] == \
        tokenizer_sha256(out / "tokenizer.json")


def test_notebook_02_bpe_step_then_a_samples_shard(data_dir, tmp_path):
    out = tmp_path / "run"
    common = dict(data_dir=str(data_dir), output_dir=str(out), vocab_size=950, max_seq_len=512, roundtrip_files=0,
                  make_figures=False)
    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "bpe.ipynb"), progress_bar=False, kernel_name="python3",
                        parameters=dict(common, step="bpe"))
    assert not (out / "tokens").exists()  # the bpe step builds no samples
    frozen = tokenizer_sha256(out / "tokenizer.json")
    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "shard.ipynb"), progress_bar=False, kernel_name="python3",
                        parameters=dict(common, step="samples", num_shards=2, shard_index=1))
    shard = out / "tokens" / "shards" / "shard_0001"
    assert tokenizer_sha256(out / "tokenizer.json") == frozen  # read, never written
    assert json.loads((shard / "build.json").read_text())["tokenizer_sha256"] == frozen
    assert json.loads((shard / "params.json").read_text())["step"] == "samples"
    assert len(load_tokens(out, "train")) > 0
