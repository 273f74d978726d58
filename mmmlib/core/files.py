"""Atomic file writes: a reader (another job, a shard, a resumed run) never sees half a file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def _temporary(path: Path) -> Path:
    """A name beside ``path``, private to this process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def copy_atomic(source: str | Path, target: str | Path) -> Path:
    """Copy ``source`` to ``target`` under a temporary name, then rename it.

    :return: ``target``.
    """
    target = Path(target)
    tmp = _temporary(target)
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` under a temporary name, then rename it.

    :return: ``path``.
    """
    path = Path(path)
    tmp = _temporary(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
