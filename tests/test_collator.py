"""Batches for training: padding, attention masks, labels from the loss mask, sample order, data checks."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from mmmlib.core.errors import ConfigError, DataError
from mmmlib.training import (
    IGNORE_INDEX,
    MMMCollator,
    check_token_dataset,
    count_loss_tokens,
    epoch_batches,
    load_token_split,
)

PAD = 0


def test_right_pads_and_masks_labels():
    samples = [
        {"input_ids": [5, 6, 7, 8], "loss_mask": [0, 0, 1, 1]},  # two attribute controls, then music
        {"input_ids": [9, 10], "loss_mask": [1, 1]},
    ]
    batch = MMMCollator(pad_token_id=PAD)(samples)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, PAD, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 7, 8], [9, 10, IGNORE_INDEX, IGNORE_INDEX]]
    assert all(t.dtype == torch.int64 for t in batch.values())


def test_missing_loss_mask_predicts_every_token():
    batch = MMMCollator(pad_token_id=PAD)([{"input_ids": [3, 4, 5]}])
    assert batch["labels"].tolist() == [[3, 4, 5]]


def test_pad_to_multiple_of_never_exceeds_max_length():
    collator = MMMCollator(pad_token_id=PAD, pad_to_multiple_of=8, max_length=12)
    assert collator([{"input_ids": [1] * 5}])["input_ids"].shape == (1, 8)
    assert collator([{"input_ids": [1] * 10}])["input_ids"].shape == (1, 12)


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"input_ids": [1] * 20}, "more than max_length"),
        ({"input_ids": [1, 2, 3], "loss_mask": [1, 1]}, "loss_mask has 2 values"),
        ({"input_ids": []}, "no tokens"),
    ],
)
def test_bad_samples_are_errors(sample, message):
    with pytest.raises(DataError, match=message):
        MMMCollator(pad_token_id=PAD, max_length=16)([sample])


def test_epoch_batches_are_reproducible_and_shard_across_processes():
    lengths = np.arange(1, 101)
    first = epoch_batches(lengths, batch_size=4, epoch=0, seed=1)
    assert first == epoch_batches(lengths, batch_size=4, epoch=0, seed=1)
    assert first != epoch_batches(lengths, batch_size=4, epoch=1, seed=1)
    shards = [epoch_batches(lengths, 4, 0, 1, rank=r, world_size=3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1, "every process must step the same number of times"
    seen = [i for shard in shards for batch in shard for i in batch]
    assert len(seen) == len(set(seen)), "processes must not share samples"


def test_group_by_length_reduces_padding():
    lengths = np.random.default_rng(0).integers(10, 1000, size=2048)

    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    plain = epoch_batches(lengths, 8, epoch=0, seed=0)
    grouped = epoch_batches(lengths, 8, epoch=0, seed=0, group_by_length=True)
    assert sorted(i for b in grouped for i in b) == sorted(i for b in plain for i in b)
    assert padded(grouped) < 0.7 * padded(plain)


FEATURES = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                              "loss_mask": datasets.Sequence(datasets.Value("int8"))})


def _dataset(ids: list[list[int]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"input_ids": ids, "loss_mask": [[1] * len(x) for x in ids]}, features=FEATURES)


def test_check_token_dataset_returns_lengths():
    assert check_token_dataset(_dataset([[1, 2], [3, 4, 5]]), "x", vocab_size=6, max_seq_len=3).tolist() == [2, 3]


@pytest.mark.parametrize(
    ("ids", "vocab_size", "max_seq_len", "message"),
    [
        ([[1, 2], [3, 9]], 8, 16, "`vocab_size` .* has 8 tokens but tokens/train holds token id 9"),
        ([[1, 2, 3, 4]], 8, 3, "`max_seq_len` \\(3\\) is shorter than the longest sample"),
    ],
)
def test_check_token_dataset_rejects_mismatches(ids, vocab_size, max_seq_len, message):
    with pytest.raises(ConfigError, match=message):
        check_token_dataset(_dataset(ids), "tokens/train", vocab_size, max_seq_len)


def test_check_token_dataset_rejects_malformed_data():
    bad = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3]], "loss_mask": [[1, 1]]}, features=FEATURES)
    with pytest.raises(DataError, match="loss_mask and input_ids differ in length"):
        check_token_dataset(bad, "tokens/train", vocab_size=8, max_seq_len=16)


def test_loss_tokens_are_the_shifted_labels_that_are_predicted():
    batch = MMMCollator(pad_token_id=PAD)([{"input_ids": [5, 6, 7, 8], "loss_mask": [0, 0, 1, 1]},
                                           {"input_ids": [9, 10], "loss_mask": [1, 1]}])
    # row 1: labels 7, 8 (the controls are context); row 2: label 10 only (9 is never a target)
    assert int(count_loss_tokens(batch["labels"])) == 3


def test_load_token_split_reads_merged_or_sharded_layouts(tmp_path):
    merged = _dataset([[1, 2], [3, 4, 5]]).add_column("md5", ["a", "b"])
    merged.save_to_disk(str(tmp_path / "merged" / "train"))
    ds = load_token_split(tmp_path / "merged", "train")
    assert ds.column_names == ["input_ids", "loss_mask"] and len(ds) == 2
    for shard, ids in enumerate([[[1, 2]], [], [[3, 4, 5], [6]]]):  # an empty shard too
        folder = str(tmp_path / "sharded" / "shards" / f"shard_{shard:04d}" / "train")
        _dataset(ids).save_to_disk(folder, num_shards=1)  # as mmmlib.tokens.dataset saves an empty split
    ds = load_token_split(tmp_path / "sharded", "train")
    assert ds["input_ids"] == [[1, 2], [3, 4, 5], [6]]
    assert check_token_dataset(ds, "sharded", vocab_size=7, max_seq_len=3).tolist() == [2, 3, 1]
    with pytest.raises(ConfigError, match="`tokens_dir` has no 'valid' dataset"):
        load_token_split(tmp_path / "merged", "valid")
