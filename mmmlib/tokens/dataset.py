"""The sample step: tokenised training samples per split on disk, from a frozen tokenizer.

Input: a data-prep folder (``files.parquet``, ``loops.parquet``; see :mod:`mmmlib.data.preparation`)
and the ``tokenizer.json`` the BPE step froze (:mod:`mmmlib.tokens.bpe`): this module only
reads it. Output, under ``output_dir``:

- ``tokens/{split}/``: a Hugging Face dataset (``Dataset.save_to_disk``, memory-mapped
  by ``datasets.load_from_disk``) with columns ``input_ids`` (int32 list), ``loss_mask``
  (int8 list, 1 = in the loss, 0 = control or infill placeholder), ``md5``,
  ``bar_start``, ``bar_end``, ``num_tracks``, ``infill_bars``, ``transpose``,
  ``velocity_shift``, ``num_tokens``;
- ``tokens/tokenizer.json``, the private copy of the tokenizer the workers loaded, and
  ``tokens/build.json``: its sha256, the seed and the sample options;
- with ``num_shards > 1`` each task writes the same into ``tokens/shards/shard_XXXX/``,
  and ``python -m mmmlib tokens merge OUTPUT_DIR --num-shards N`` joins them into
  ``tokens/{split}/`` (in md5 order, as one process writes them), refusing shards built
  with different tokenizers. :func:`load_tokens` reads either layout.

Reproducible: files are taken in md5 order and each file draws from its own generator
seeded with ``(seed, md5)``, so the output does not depend on ``workers`` or sharding.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset, Features, List, Value, concatenate_datasets, load_from_disk

from mmmlib.core.errors import ConfigError, DataError
from mmmlib.core.files import copy_atomic
from mmmlib.core.midi import read_score
from mmmlib.tokens.bpe import tokenizer_sha256, train_bpe
from mmmlib.tokens.corpus import SPLITS, FileTask, file_seed, ordered_map, tasks_of
from mmmlib.tokens.loading import load_any_tokenizer
from mmmlib.tokens.published import PublishedTokenizer
from mmmlib.tokens.published_build import train_published_bpe
from mmmlib.tokens.published_samples import augmented_scores, loops_of_task
from mmmlib.tokens.published_samples import file_samples as published_file_samples
from mmmlib.tokens.samples import SampleOptions, augmentations, file_samples
from mmmlib.tokens.tokenizer import ControlSwitches, build_tokenizer

BUILD_INFO = "build.json"
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


# --------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _init_worker(tokenizer_path: str, opts: SampleOptions, seed: int, augment_copies: int) -> None:
    tok = load_any_tokenizer(tokenizer_path)
    _WORKER.update(tok=tok, published=isinstance(tok, PublishedTokenizer), opts=opts, seed=seed,
                   copies=augment_copies)


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
    copies = _WORKER["copies"] if task.split == "train" else 0
    try:
        if _WORKER["published"]:
            return task, *_published_rows(tok, task, rng, opts, copies), ""
        prepared = tok.prepare(read_score(task.path, task.row), task.loops)
        samples, dropped = file_samples(tok, prepared, rng, opts)
        rows = _rows(samples, task.md5, 0, 0)
        for variant, semitones, bins in augmentations(tok, prepared, rng, copies):
            samples, more = file_samples(tok, variant, rng, opts)
            rows += _rows(samples, task.md5, semitones, bins)
            dropped += more
    except Exception as exc:  # one bad file must not stop a corpus
        return task, [], 0, f"{type(exc).__name__}: {exc}"
    return task, rows, dropped, ""


def _published_rows(tok: PublishedTokenizer, task: FileTask, rng: np.random.Generator, opts: SampleOptions,
                    copies: int) -> tuple[list[dict], int]:
    """Rows and dropped chunks of one file in the published dialect (plus augmented copies)."""
    score = read_score(task.path, task.row)
    loops = loops_of_task(task.loops)
    samples, dropped = published_file_samples(tok, score, loops, rng, opts)
    rows = _rows(samples, task.md5, 0, 0)
    for variant, semitones, steps in augmented_scores(score, tok.vocab.grids.pitch_range, rng, copies):
        samples, more = published_file_samples(tok, variant, loops, rng, opts)
        rows += _rows(samples, task.md5, semitones, steps)
        dropped += more
    return rows, dropped


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


def private_copy(tokenizer_path: str | Path, out_dir: str | Path) -> Path:
    """Copy the frozen tokenizer into ``out_dir/tokenizer.json`` (atomically), for this run only.

    The workers load this copy, so nothing another job does to the shared file afterwards
    can reach a split half-way; its sha256 is what :data:`BUILD_INFO` records.
    """
    source, target = Path(tokenizer_path), Path(out_dir) / "tokenizer.json"
    if not source.is_file():
        raise DataError(f"no frozen tokenizer at {source}: train it first with the BPE step")
    if target.exists() and target.samefile(source):
        return target
    return copy_atomic(source, target)


def build_splits(tokenizer_path: str | Path, tasks: Sequence[FileTask], out_dir: str | Path, opts: SampleOptions,
                 seed: int, augment_copies: int = 0, workers: int = 1) -> pd.DataFrame:
    """Tokenise every task into ``out_dir/{split}`` with a private copy of a frozen tokenizer.

    :param tokenizer_path: the ``tokenizer.json`` of the BPE step (only read, once).
    :param tasks: files to tokenise (this shard's share, see :func:`tasks_of`).
    :param out_dir: :func:`tokens_dir` of the run; receives the splits, ``tokenizer.json``
        (the copy the workers load) and :data:`BUILD_INFO` (its sha256, seed, options).
    :param opts: how samples are cut and masked.
    :param seed: seed of every file's draws (with its md5).
    :param augment_copies: augmented copies per train file.
    :param workers: processes of the pool.
    :return: one row per file: ``md5, split, samples, dropped, tokens, error``.
    """
    out_dir = Path(out_dir)
    (out_dir / BUILD_INFO).unlink(missing_ok=True)  # written last: its presence means "complete"
    copy = private_copy(tokenizer_path, out_dir)
    report = []
    init = (str(copy), opts, seed, augment_copies)
    for split in SPLITS:
        split_tasks = [t for t in tasks if t.split == split]

        def batches(split_tasks=split_tasks, split=split):
            for task, rows, dropped, error in ordered_map(tokenize_file, split_tasks, _init_worker, init, workers,
                                                          split):
                report.append({"md5": task.md5, "split": split, "samples": len(rows), "dropped": dropped,
                               "tokens": int(sum(r["num_tokens"] for r in rows)), "error": error})
                yield rows

        write_split(batches(), out_dir / split)
    info = {"tokenizer_sha256": tokenizer_sha256(copy), "seed": seed, "augment_copies": augment_copies,
            "sample_options": dataclasses.asdict(opts), "num_files": len(tasks)}
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return pd.DataFrame(report, columns=["md5", "split", "samples", "dropped", "tokens", "error"])


def _concatenate(folders: list[Path]) -> Dataset:
    """Datasets of several folders, one after the other (empty ones skipped: they have no table)."""
    parts = [load_from_disk(str(f)) for f in folders]
    non_empty = [d for d in parts if len(d)]
    return concatenate_datasets(non_empty) if non_empty else parts[0]


def load_tokens(output_dir: str | Path, split: str) -> Dataset:
    """The samples of a split, memory-mapped (merged layout, or the shards concatenated).

    :raises DataError: when the split was not built.
    """
    base = Path(output_dir) / "tokens"
    if (base / split / "state.json").exists():
        return load_from_disk(str(base / split))
    parts = sorted((base / "shards").glob(f"shard_*/{split}"))
    if not parts:
        raise DataError(f"no tokenised {split!r} split under {base} (run the samples step of 02 first)")
    return _concatenate(parts)


def shard_build_info(output_dir: str | Path, num_shards: int) -> dict:
    """The :data:`BUILD_INFO` all shards share (with their files summed).

    :raises DataError: when a shard is unfinished, or shards (or the shared ``tokenizer.json``)
        disagree on the tokenizer, the seed or the sample options.
    """
    folders = [tokens_dir(output_dir, i, num_shards) for i in range(num_shards)]
    missing = [str(f) for f in folders if not (f / BUILD_INFO).is_file()]
    if missing:
        raise DataError(f"shards not finished (no {BUILD_INFO}): {missing}")
    infos = [json.loads((f / BUILD_INFO).read_text()) for f in folders]
    shas = {info["tokenizer_sha256"] for info in infos}
    if len(shas) > 1:
        per_shard = ", ".join(f"{f.name}: {info['tokenizer_sha256'][:12]}" for f, info in zip(folders, infos, strict=True))
        raise DataError(f"shards were built with different tokenizers ({per_shard}); rebuild them all from "
                        "one frozen tokenizer.json (BPE step first, then the sample step)")
    shared = Path(output_dir) / "tokenizer.json"
    if shared.is_file() and tokenizer_sha256(shared) not in shas:
        raise DataError(f"{shared} is not the tokenizer the shards were built with (it changed after they "
                        "ran): rebuild the shards from it")
    settings = {json.dumps({k: v for k, v in info.items() if k != "num_files"}, sort_keys=True) for info in infos}
    if len(settings) > 1:
        raise DataError(f"shards were built with different seeds or sample options: {sorted(settings)}")
    return {**infos[0], "num_files": sum(info["num_files"] for info in infos)}


def merge_shards(output_dir: str | Path, num_shards: int) -> dict[str, int]:
    """Join ``tokens/shards/shard_XXXX/{split}`` into ``tokens/{split}``; return rows per split.

    Rows come out in md5 order (a stable sort: each file keeps its own order), exactly as
    one process writes them, so a merged run equals an unsharded one.

    :raises ConfigError: for ``num_shards < 2``.
    :raises DataError: see :func:`shard_build_info`.
    """
    if num_shards < 2:
        raise ConfigError("num_shards", f"must be >= 2 to merge shards, got {num_shards}")
    info = shard_build_info(output_dir, num_shards)
    base = Path(output_dir) / "tokens"
    counts = {}
    for split in SPLITS:
        merged = _concatenate([tokens_dir(output_dir, i, num_shards) / split for i in range(num_shards)])
        if len(merged):
            order = np.argsort(np.asarray(merged["md5"]), kind="stable")
            merged = merged.select(order, keep_in_memory=True)
        merged.save_to_disk(str(base / split), num_shards=None if len(merged) else 1)
        counts[split] = len(merged)
    private_copy(tokens_dir(output_dir, 0, num_shards) / "tokenizer.json", base)
    (base / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return counts


def _bpe_command(args: argparse.Namespace) -> None:
    path = Path(args.output_dir) / "tokenizer.json"
    tasks = tasks_of(args.data_dir)
    if args.dialect == "published":
        if args.quantized or args.no_control:
            raise SystemExit("--quantized and --no-control are settings of --dialect mmmlib")
        tok = train_published_bpe(path, tasks, args.vocab_size, args.max_files, args.seed, args.workers,
                                  args.base_tokenizer)
    else:
        switches = ControlSwitches(**{name: False for name in args.no_control})
        tok = build_tokenizer(not args.quantized, args.microtiming_resolution, switches)
        train_bpe(tok, path, tasks, args.vocab_size, args.max_files, args.seed, args.workers)
    print(f"{path}: {len(tok)} ids, sha256 {tokenizer_sha256(path)}")


def main(argv: list[str] | None = None) -> int:
    """``mmmlib tokens {bpe,merge} ...``: the BPE step and the merge of the sample step's shards."""
    parser = argparse.ArgumentParser(prog="mmmlib tokens", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bpe = sub.add_parser("bpe", help="train BPE on the train split and freeze OUTPUT_DIR/tokenizer.json")
    bpe.add_argument("data_dir", help="output folder of data prep (files.parquet, loops.parquet)")
    bpe.add_argument("output_dir", help="where tokenizer.json is written")
    bpe.add_argument("--vocab-size", type=int, default=16000, help="vocabulary size after BPE (0: no BPE)")
    bpe.add_argument("--max-files", type=int, default=20000, help="train files BPE learns from (seeded sample)")
    bpe.add_argument("--seed", type=int, default=0, help="seed of the file sample")
    bpe.add_argument("--workers", type=int, default=1, help="processes that encode the files")
    bpe.add_argument("--dialect", choices=["published", "mmmlib"], default="published",
                     help="token language: the published MIDI-GPT-Loop one (default) or mmmlib's own")
    bpe.add_argument("--base-tokenizer", default="",
                     help="published dialect: freeze this tokenizer file as it is instead of training BPE")
    bpe.add_argument("--quantized", action="store_true", help="mmmlib dialect: no microtiming, 32 velocity bins")
    bpe.add_argument("--microtiming-resolution", type=int, default=192, help="microtiming ticks per beat")
    bpe.add_argument("--no-control", action="append", default=[], metavar="NAME",
                     choices=[f.name for f in dataclasses.fields(ControlSwitches)],
                     help="leave a control out (repeatable): %(choices)s")
    merge = sub.add_parser("merge", help="join tokens/shards/* into tokens/{split} (same tokenizer required)")
    merge.add_argument("output_dir", help="the run folder (tokenizer.json, tokens/shards/shard_XXXX/)")
    merge.add_argument("--num-shards", type=int, required=True, help="size of the SLURM array")
    args = parser.parse_args(argv)
    if args.command == "bpe":
        _bpe_command(args)
    else:
        for split, count in merge_shards(args.output_dir, args.num_shards).items():
            print(f"{split}: {count} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
