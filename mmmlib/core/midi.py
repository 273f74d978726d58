"""MIDI reading and writing: the one home of every stage's file access.

Sources are plain MIDI files or rows of GigaMIDI-style parquet files (one MIDI file as
bytes per row); ``(path, row)`` names one, with ``row = -1`` for a plain file.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from symusic import Score

# Column names that GigaMIDI-style parquet files use for the MIDI bytes, in order of preference.
BYTES_COLUMNS = ("music", "midi", "midi_bytes", "bytes", "content", "data")


def bytes_column(parquet_path: str | Path) -> str:
    """Name of the column holding MIDI bytes in a GigaMIDI-style parquet file."""
    schema = pq.read_schema(parquet_path)
    for name in BYTES_COLUMNS:
        if name in schema.names:
            return name
    binary = [f.name for f in schema if str(f.type) in ("binary", "large_binary")]
    if not binary:
        raise ValueError(f"{parquet_path}: no column of MIDI bytes (tried {BYTES_COLUMNS} and binary columns)")
    return binary[0]


@functools.lru_cache(maxsize=4)
def _parquet_bytes(path: str) -> list:
    """The MIDI-bytes column of a parquet file, cached (workers read many rows of one file)."""
    return pq.read_table(path, columns=[bytes_column(path)]).column(0).to_pylist()


def read_midi_bytes(path: str | Path, row: int = -1) -> bytes:
    """Raw MIDI bytes of a source (a file, or a row of a parquet file)."""
    if row < 0:
        return Path(path).read_bytes()
    value = _parquet_bytes(str(path))[row]
    return b"" if value is None else bytes(value)


def read_score(path: str | Path, row: int = -1):
    """The tick-time ``symusic.Score`` of a source listed in ``files.parquet`` (``path``, ``row``)."""
    if row < 0:
        return Score(str(path))
    return Score.from_midi(read_midi_bytes(path, row))


@functools.lru_cache(maxsize=512)
def read_score_cached(path: str) -> Score:
    """:func:`read_score` of a plain file, cached (evaluation reads each generated file
    for loops, features and audio)."""
    return read_score(path)


def read_midi_files(paths: Iterable[str], failed: list[str]) -> Iterator[tuple[str, Score]]:
    """Yield ``(path, tick-time score)`` per readable file; report the others and go on.

    An unreadable file prints its reason on stderr and is appended to ``failed``, so the
    caller can exit non-zero at the end without stopping at the first bad file.
    """
    for path in paths:
        try:
            score = Score(path)
        except Exception as exc:
            print(f"{path}: cannot read MIDI: {exc}", file=sys.stderr)
            failed.append(path)
            continue
        yield path, score


def write_midi_atomic(score: Any, path: Path) -> None:
    """Write a MIDI file under a temporary name, then rename it (never half-written)."""
    tmp = path.with_name(f".{path.name}.tmp")
    score.dump_midi(str(tmp))
    os.replace(tmp, path)
