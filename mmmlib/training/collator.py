"""From token datasets to training batches: checks, sample order, padding.

Samples come from the token datasets (``input_ids`` and ``loss_mask`` columns, see
:mod:`mmmlib.tokens.dataset`). A batch is right-padded with the tokenizer's pad id; the labels
are the input ids, with ``-100`` (ignored by the loss) on padding and wherever
``loss_mask`` is 0: attribute-control and infill-placeholder tokens are given to the
model as context but never predicted. The model shifts labels itself (position ``i``
predicts label ``i + 1``), so labels are aligned with ``input_ids`` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmmlib.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    import datasets

IGNORE_INDEX = -100  # the label value torch's cross-entropy (and transformers) skips


def count_loss_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Number of tokens the loss is computed on in a batch's ``labels`` (an int64 scalar tensor).

    The model shifts labels (position ``i`` predicts label ``i + 1``), so the first label of
    each row is never a target: only the shifted labels that are not :data:`IGNORE_INDEX` count.
    """
    return (labels[:, 1:] != IGNORE_INDEX).sum()


@dataclass
class MMMCollator:
    """Pad a list of samples into a training batch.

    :param pad_token_id: the tokenizer's pad id (``tokenizer.pad_token_id``).
    :param pad_to_multiple_of: round the padded length up to a multiple of this (8 helps
        GPU kernels); ``None`` pads to the longest sample only.
    :param max_length: longest allowed sample; a longer one is an error, not a silent cut,
        because the dataset was built for another context length.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.pad_token_id < 0:
            raise ConfigError("pad_token_id", f"must be >= 0, got {self.pad_token_id}")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ConfigError("pad_to_multiple_of", f"must be >= 1 or None, got {self.pad_to_multiple_of}")

    def padded_length(self, longest: int) -> int:
        """Length of a batch whose longest sample has ``longest`` tokens."""
        multiple = self.pad_to_multiple_of or 1
        length = -(-longest // multiple) * multiple
        if self.max_length is not None:
            length = max(longest, min(length, self.max_length))  # rounding never exceeds max_length
        return length

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Batch ``samples`` (dicts with ``input_ids`` and optionally ``loss_mask``).

        :return: ``input_ids``, ``attention_mask`` and ``labels``, each ``(batch, length)`` int64.
        """
        if not samples:
            raise DataError("cannot collate an empty list of samples")
        lengths = [len(s["input_ids"]) for s in samples]
        if min(lengths) == 0:
            raise DataError("a sample has no tokens")
        if self.max_length is not None and max(lengths) > self.max_length:
            raise DataError(f"a sample has {max(lengths)} tokens, more than max_length={self.max_length}")
        length = self.padded_length(max(lengths))
        input_ids = np.full((len(samples), length), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(samples), length), dtype=np.int64)
        labels = np.full((len(samples), length), IGNORE_INDEX, dtype=np.int64)
        for row, (sample, n) in enumerate(zip(samples, lengths, strict=True)):
            ids = np.asarray(sample["input_ids"], dtype=np.int64)
            mask = sample.get("loss_mask")
            is_predicted = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
            if is_predicted.shape != (n,):
                raise DataError(f"loss_mask has {is_predicted.size} values for {n} input_ids")
            input_ids[row, :n] = ids
            attention_mask[row, :n] = 1
            labels[row, :n] = np.where(is_predicted, ids, IGNORE_INDEX)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(labels),
        }


def load_token_split(tokens_dir: str | Path, split: str) -> datasets.Dataset:
    """One split of the token datasets, memory-mapped, with only the columns training reads.

    Reads ``tokens_dir/{split}/`` or, before the shards of a SLURM array are merged, every
    ``tokens_dir/shards/shard_XXXX/{split}/`` one after the other (see :mod:`mmmlib.tokens.dataset`).
    """
    import datasets

    folder = Path(tokens_dir) / split
    parts = [folder] if (folder / "state.json").exists() else sorted(Path(tokens_dir).glob(f"shards/shard_*/{split}"))
    if not parts:
        raise ConfigError("tokens_dir", f"has no {split!r} dataset: {tokens_dir} (run 02_tokenizer first)")
    loaded = [datasets.load_from_disk(str(part)) for part in parts]
    ds = datasets.concatenate_datasets([d for d in loaded if len(d)] or loaded[:1])
    missing = {"input_ids", "loss_mask"} - set(ds.column_names)
    if missing:
        raise DataError(f"{folder} lacks column(s) {sorted(missing)}: not a token dataset of 02_tokenizer")
    return ds.select_columns(["input_ids", "loss_mask"])


def check_token_dataset(ds: datasets.Dataset, where: str | Path, vocab_size: int, max_seq_len: int) -> np.ndarray:
    """Fail with a clear message when a token dataset does not fit the tokenizer or the model.

    Reads the Arrow columns directly (no Python loop), so it is cheap on large datasets.

    :param ds: a token dataset (from :func:`load_token_split`).
    :param where: its folder, for messages.
    :param vocab_size: ``len(tokenizer)``: every id must be below it.
    :param max_seq_len: the model's position limit: every sample must fit.
    :return: the length of every sample.
    """
    import pyarrow.compute as pc

    if len(ds) == 0:
        raise DataError(f"{where} has no samples")
    ids = ds.data.column("input_ids")
    lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
    mask_lengths = pc.list_value_length(ds.data.column("loss_mask")).to_numpy(zero_copy_only=False)
    if not np.array_equal(lengths, mask_lengths):
        raise DataError(f"in {where}, some loss_mask and input_ids differ in length")
    max_id = pc.max(pc.list_flatten(ids)).as_py()
    if max_id >= vocab_size:
        raise ConfigError(
            "vocab_size", f"(the tokenizer's vocabulary) has {vocab_size} tokens but {where} holds token id "
            f"{max_id}: the dataset was made with another tokenizer (re-run 02_tokenizer, or use the "
            "tokenizer.json it wrote)")
    if lengths.max() > max_seq_len:
        raise ConfigError(
            "max_seq_len", f"({max_seq_len}) is shorter than the longest sample of {where} "
            f"({lengths.max()} tokens): raise max_seq_len (the model's position limit) or re-tokenize shorter")
    return lengths


def epoch_batches(lengths: np.ndarray, batch_size: int, epoch: int, seed: int, rank: int = 0,
                  world_size: int = 1, group_by_length: bool = False) -> list[list[int]]:
    """Sample indices of each micro-batch of one epoch, for process ``rank`` of ``world_size``.

    A pure function of its arguments, so a resumed run replays the same order. Every
    process gets the same number of batches (they step together); the remainder of the
    epoch is dropped. With ``group_by_length``, samples are sorted by length within chunks
    of 64 global batches (less padding) and the batches are then shuffled.

    :param lengths: length of every sample (from :func:`check_token_dataset`).
    :return: one list of sample indices per micro-batch.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    global_batch = batch_size * world_size
    if group_by_length:
        chunks = np.array_split(order, range(64 * global_batch, len(order), 64 * global_batch))
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    num_batches = len(order) // global_batch
    mine = order[rank::world_size]
    batches = [mine[i * batch_size:(i + 1) * batch_size].tolist() for i in range(num_batches)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(num_batches)]
    return batches
