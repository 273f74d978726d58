"""The files of a data-prep folder as tasks, and the ordered worker pool that processes them.

Shared by the BPE step (:mod:`mmmlib.tokens.bpe`) and the sample step
(:mod:`mmmlib.tokens.dataset`). Tasks come in md5 order and a shard takes every
``num_shards``-th one, so that any layout of shards covers the same files in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mmmlib.core.errors import DataError

SPLITS = ("train", "valid", "test")


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
    """Files of a data-prep folder (this shard's share), in md5 order, with their loops.

    :param data_dir: output folder of data prep (``files.parquet``, optional ``loops.parquet``).
    :param splits: splits to keep.
    :param shard_index: this shard, in ``[0, num_shards)``.
    :param num_shards: number of shards the files are dealt into.
    :return: the tasks; loops are ``(start_tick, end_tick, duration_beats)`` rows per track.
    :raises DataError: when ``files.parquet`` is missing.
    """
    data_dir = Path(data_dir)
    if not (data_dir / "files.parquet").is_file():
        raise DataError(f"no files.parquet in {data_dir} (the output folder of data prep)")
    files = pd.read_parquet(data_dir / "files.parquet")
    loops_path = data_dir / "loops.parquet"
    loops = pd.read_parquet(loops_path) if loops_path.exists() else pd.DataFrame(columns=["md5", "track_idx"])
    files = files[files["split"].isin(splits)].sort_values("md5").reset_index(drop=True)
    files = files.iloc[shard_index::num_shards]
    by_file: dict[str, dict[int, np.ndarray]] = {}
    for (md5, track), rows in loops.groupby(["md5", "track_idx"]):
        by_file.setdefault(md5, {})[int(track)] = rows[["start_tick", "end_tick", "duration_beats"]].to_numpy(float)
    return [FileTask(r.md5, str(r.path), int(r.row), r.split, by_file.get(r.md5, {})) for r in files.itertuples()]


def ordered_map(func: Callable[[Any], Any], tasks: Iterable, initializer: Callable[..., None],
                init_args: tuple, workers: int, desc: str) -> Iterator:
    """``map(func, tasks)`` in task order, in a pool of ``workers`` processes when ``workers > 1``.

    :param initializer: run once per process with ``init_args`` (in this process when
        ``workers <= 1``), e.g. to load a tokenizer into a module-level slot.
    """
    tasks = list(tasks)
    if workers <= 1:
        initializer(*init_args)
        yield from tqdm(map(func, tasks), total=len(tasks), desc=desc, mininterval=5)
        return
    with Pool(workers, initializer=initializer, initargs=init_args) as pool:
        yield from tqdm(pool.imap(func, tasks, chunksize=4), total=len(tasks), desc=desc, mininterval=5)
