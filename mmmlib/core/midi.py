"""Shared plumbing of the command-line entry points (``python -m mmmlib.data.nomml``, ``...loops``)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from symusic import Score


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
