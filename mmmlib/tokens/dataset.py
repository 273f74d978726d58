"""Tokenised training data: BPE training on the train split, then samples per split on disk.

Input: a data-prep folder (``files.parquet``, ``loops.parquet``; see :mod:`mmmlib.data.prepare`).
Output, under ``output_dir``:

- ``tokens/{split}/``: a Hugging Face dataset (``Dataset.save_to_disk``, memory-mapped
  by ``datasets.load_from_disk``) with columns ``input_ids`` (int32 list), ``loss_mask``
  (int8 list, 1 = in the loss, 0 = control or infill placeholder), ``md5``,
  ``bar_start``, ``bar_end``, ``num_tracks``, ``infill_bars``, ``transpose``,
  ``velocity_shift``, ``num_tokens``;
- with ``num_shards > 1`` each task writes ``tokens/shards/shard_XXXX/{split}/`` and
  ``python -m mmmlib.tokens.dataset merge OUTPUT_DIR --num-shards N`` joins them into
  ``tokens/{split}/``. :func:`load_tokens` reads either layout.

Reproducible: files are taken in md5 order and each file draws from its own generator
seeded with ``(seed, md5)``, so the output does not depend on ``workers`` or sharding.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset, Features, List, Value, concatenate_datasets, load_from_disk
from tqdm.auto import tqdm

from mmmlib.core.midi import read_score
from mmmlib.tokens.samples import SampleOptions, augmentations, file_samples
from mmmlib.tokens.tokenizer import MMMLoop, load_tokenizer

SPLITS = ("train", "valid", "test")
FEATURES = Features({
    "input_ids": List(Value("int32")),
    "loss_mask": List(Value("int8")),
    "md5": Value("string"),
    "bar_start": Value("int32"),
    "bar_end": Value("int32"),
    "num_tracks": Value("int32"),
    "infill_bars": Value("int32"),
    "transpose": Value("int8"),
    "velocity_shift": Value("int8"),
    "num_tokens": Value("int32"),
})


@dataclass(frozen=True)
class FileTask:
    """One file to tokenise: where it is, its split and its loops."""

    md5: str
    path: str
    row: int
    split: str
    loops: dict = field(default_factory=dict, hash=False, compare=False)


def file_seed(seed: int, md5: str) -> np.random.Generator:
    """The generator of one file: depends on the seed and the file, not on the run layout."""
    return np.random.default_rng([seed, int(md5[:12], 16)])


def tasks_of(data_dir: str | Path, splits: tuple[str, ...] = SPLITS, shard_index: int = 0,
             num_shards: int = 1) -> list[FileTask]:
    """Files of a data-prep folder (this shard's share), in md5 order, with their loops."""
    data_dir = Path(data_dir)
    files = pd.read_parquet(data_dir / "files.parquet")
    loops_path = data_dir / "loops.parquet"
    loops = pd.read_parquet(loops_path) if loops_path.exists() else pd.DataFrame(columns=["md5", "track_idx"])
    files = files[files["split"].isin(splits)].sort_values("md5").reset_index(drop=True)
    files = files.iloc[shard_index::num_shards]
    by_file: dict[str, dict[int, np.ndarray]] = {}
    for (md5, track), rows in loops.groupby(["md5", "track_idx"]):
        by_file.setdefault(md5, {})[int(track)] = rows[["start_tick", "end_tick", "duration_beats"]].to_numpy(float)
    return [FileTask(r.md5, str(r.path), int(r.row), r.split, by_file.get(r.md5, {})) for r in files.itertuples()]


# --------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _init_worker(tokenizer_path: str, opts: SampleOptions, seed: int, augment_copies: int) -> None:
    _WORKER.update(tok=load_tokenizer(tokenizer_path), opts=opts, seed=seed, copies=augment_copies)


def _rows(samples, md5: str, transpose: int, velocity_shift: int) -> list[dict]:
    return [{"input_ids": s.input_ids, "loss_mask": s.loss_mask, "md5": md5, "bar_start": s.bar_start,
             "bar_end": s.bar_end, "num_tracks": len(s.track_idx), "infill_bars": s.infill_bars,
             "transpose": transpose, "velocity_shift": velocity_shift, "num_tokens": len(s.input_ids)}
            for s in samples]


def tokenize_file(task: FileTask) -> tuple[FileTask, list[dict], int, str]:
    """Worker: samples of one file (plus augmented copies for the train split); never raises.

    :return: ``(task, rows, dropped chunks, error message or "")``.
    """
    tok, opts = _WORKER["tok"], _WORKER["opts"]
    rng = file_seed(_WORKER["seed"], task.md5)
    try:
        prepared = tok.prepare(read_score(task.path, task.row), task.loops)
        samples, dropped = file_samples(tok, prepared, rng, opts)
        rows = _rows(samples, task.md5, 0, 0)
        copies = _WORKER["copies"] if task.split == "train" else 0
        for variant, semitones, bins in augmentations(tok, prepared, rng, copies):
            samples, more = file_samples(tok, variant, rng, opts)
            rows += _rows(samples, task.md5, semitones, bins)
            dropped += more
    except Exception as exc:  # one bad file must not stop a corpus
        return task, [], 0, f"{type(exc).__name__}: {exc}"
    return task, rows, dropped, ""


def bpe_words(task: FileTask) -> list[str]:
    """Worker: the BPE words (two tokens or more) of one file's tracks."""
    tok = _WORKER["tok"]
    try:
        tracks = tok.encode_score(read_score(task.path, task.row), bar_controls=False)
    except Exception:
        return []
    return [w for t in tracks for w in tok.words(t.tokens()) if len(w) > 1]


def _imap(func, tasks: list, init_args: tuple, workers: int, desc: str) -> Iterator:
    """Ordered map over tasks, in a pool when ``workers > 1``."""
    if workers <= 1:
        _init_worker(*init_args)
        yield from tqdm(map(func, tasks), total=len(tasks), desc=desc, mininterval=5)
        return
    with Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
        yield from tqdm(pool.imap(func, tasks, chunksize=4), total=len(tasks), desc=desc, mininterval=5)


# --------------------------------------------------------------------------- BPE
def train_bpe(tok: MMMLoop, tokenizer_path: str | Path, tasks: list[FileTask], vocab_size: int,
              max_files: int, seed: int, workers: int = 1) -> MMMLoop:
    """Train BPE on (a seeded sample of at most ``max_files``) train files, save, return.

    Deterministic: every shard of a SLURM array trains the same tokenizer; the file is
    written atomically, so concurrent writers leave one whole copy.
    """
    from mmmlib.tokens.tokenizer import save_tokenizer

    train = [t for t in tasks if t.split == "train"]
    if len(train) > max_files:
        keep = np.random.default_rng(seed).choice(len(train), size=max_files, replace=False)
        train = [train[i] for i in sorted(keep)]
    save_tokenizer(tok, tokenizer_path)  # the untrained one, for the workers
    if vocab_size > len(tok) and train:
        words: list[str] = []
        for file_words in _imap(bpe_words, train, (str(tokenizer_path), SampleOptions(), seed, 0), workers, "bpe"):
            words += file_words
        tok.train_bpe(vocab_size, words)
        save_tokenizer(tok, tokenizer_path)
    return tok


# --------------------------------------------------------------------------- writing
def record_batch(rows: list[dict]) -> pa.RecordBatch:
    """Rows as one Arrow record batch of :data:`FEATURES` (list columns built from numpy)."""
    schema = FEATURES.arrow_schema
    columns = []
    for name in schema.names:
        if name in ("input_ids", "loss_mask"):
            arrays = [np.asarray(r[name]) for r in rows]
            offsets = np.r_[0, np.cumsum([len(a) for a in arrays])].astype(np.int32)
            values = np.concatenate(arrays) if arrays else np.zeros(0)
            child = pa.array(values.astype(np.int32 if name == "input_ids" else np.int8))
            columns.append(pa.ListArray.from_arrays(pa.array(offsets), child))
        else:
            columns.append(pa.array([r[name] for r in rows], type=schema.field(name).type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def write_split(batches: Iterator[list[dict]], folder: str | Path) -> int:
    """Stream row batches into an Arrow file, then ``save_to_disk`` it to ``folder``.

    :return: the number of rows written.
    """
    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.arrow.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, FEATURES.arrow_schema) as writer:
        for rows in batches:
            if rows:
                writer.write_batch(record_batch(rows))
                count += len(rows)
    dataset = Dataset.from_file(str(tmp))
    if folder.exists():
        shutil.rmtree(folder)
    # one shard at least: datasets cannot load an empty split saved with zero shards
    dataset.save_to_disk(str(folder), num_shards=None if count else 1)
    del dataset
    tmp.unlink()
    return count


def tokens_dir(output_dir: str | Path, shard_index: int = 0, num_shards: int = 1) -> Path:
    """Where a run writes its splits: ``tokens/`` or ``tokens/shards/shard_XXXX/``."""
    base = Path(output_dir) / "tokens"
    return base if num_shards == 1 else base / "shards" / f"shard_{shard_index:04d}"


def build_splits(tokenizer_path: str | Path, tasks: list[FileTask], out_dir: str | Path, opts: SampleOptions,
                 seed: int, augment_copies: int = 0, workers: int = 1) -> pd.DataFrame:
    """Tokenise every task into ``out_dir/{split}``; return one row per file (samples, drops, error)."""
    report = []
    init = (str(tokenizer_path), opts, seed, augment_copies)
    for split in SPLITS:
        split_tasks = [t for t in tasks if t.split == split]

        def batches(split_tasks=split_tasks, split=split):
            for task, rows, dropped, error in _imap(tokenize_file, split_tasks, init, workers, split):
                report.append({"md5": task.md5, "split": split, "samples": len(rows), "dropped": dropped,
                               "tokens": int(sum(r["num_tokens"] for r in rows)), "error": error})
                yield rows

        write_split(batches(), Path(out_dir) / split)
    return pd.DataFrame(report, columns=["md5", "split", "samples", "dropped", "tokens", "error"])


def _concatenate(folders: list[Path]) -> Dataset:
    """Datasets of several folders, one after the other (empty ones skipped: they have no table)."""
    parts = [load_from_disk(str(f)) for f in folders]
    non_empty = [d for d in parts if len(d)]
    return concatenate_datasets(non_empty) if non_empty else parts[0]


def load_tokens(output_dir: str | Path, split: str) -> Dataset:
    """The samples of a split, memory-mapped (merged layout, or the shards concatenated)."""
    base = Path(output_dir) / "tokens"
    if (base / split / "state.json").exists():
        return load_from_disk(str(base / split))
    parts = sorted((base / "shards").glob(f"shard_*/{split}"))
    if not parts:
        raise FileNotFoundError(f"no tokenised {split!r} split under {base}")
    return _concatenate(parts)


def merge_shards(output_dir: str | Path, num_shards: int) -> dict[str, int]:
    """Join ``tokens/shards/shard_XXXX/{split}`` into ``tokens/{split}``; return rows per split."""
    counts = {}
    for split in SPLITS:
        parts = [tokens_dir(output_dir, i, num_shards) / split for i in range(num_shards)]
        missing = [str(p) for p in parts if not (p / "state.json").exists()]
        if missing:
            raise FileNotFoundError(f"shards not finished: {missing}")
        merged = _concatenate(parts)
        merged.save_to_disk(str(Path(output_dir) / "tokens" / split), num_shards=None if len(merged) else 1)
        counts[split] = len(merged)
    return counts


def main(argv: list[str] | None = None) -> int:
    """``python -m mmmlib.tokens.dataset merge OUTPUT_DIR --num-shards N``: join the shards of a run."""
    parser = argparse.ArgumentParser(prog="python -m mmmlib.tokens.dataset", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="join tokens/shards/* into tokens/{split}")
    merge.add_argument("output_dir")
    merge.add_argument("--num-shards", type=int, required=True)
    args = parser.parse_args(argv)
    for split, count in merge_shards(args.output_dir, args.num_shards).items():
        print(f"{split}: {count} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
