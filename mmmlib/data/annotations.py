"""GigaMIDI v1.1 annotations: the NOMML and loop columns of its parquet files, read as 01's measures.

A GigaMIDI v1.1 parquet file (Hugging Face ``Metacreation/GigaMIDI``, the extended release)
holds, next to the MIDI bytes of each file, lists with one entry per track or per loop:

- ``NOMML`` (``median_metric_depth`` in older releases): the level of each track, in the
  track order symusic reads;
- exact loops (GigaMIDI's ``loops_nomml`` detector): ``loop_track_idx``, ``loop_start``,
  ``loop_end``, ``loop_duration_beats``, ``loop_note_density`` (and ``loop_instrument_type``);
- expressive loops (the NOMML-12 notebook): ``start_tick__expressive_``,
  ``end_tick__expressive_``, ``duration_beats__expressive_``, ``note_density__expressive_``,
  ``loopability__expressive_``, ``MIDI_program_number__expressive_`` (and
  ``instrument_group__expressive_``). The release has no track index for them: a loop goes
  to the track with its program number (when several share it, the first with a note in
  the loop's span); a loop whose program no track has is dropped. A
  ``track_idx__expressive_`` column, where a file has one, is used instead.

Lists may be arrow lists or their text (``"[0, 2]"``, as in the CSV release). Each group
is used only when all of its columns are there; 01 computes the others.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

from mmmlib.data.expressive import ExpressiveLoop, ExpressiveTrack
from mmmlib.data.loops import Loop

if TYPE_CHECKING:
    from symusic import Score

NOMML_COLUMNS = ("NOMML", "median_metric_depth")  # the first one present is read
EXACT_COLUMNS = ("loop_track_idx", "loop_start", "loop_end", "loop_duration_beats", "loop_note_density")
EXPRESSIVE_COLUMNS = ("MIDI_program_number__expressive_", "start_tick__expressive_", "end_tick__expressive_",
                      "duration_beats__expressive_", "note_density__expressive_", "loopability__expressive_")
EXPRESSIVE_TRACK_COLUMN = "track_idx__expressive_"


@dataclass(frozen=True)
class DatasetAnnotations:
    """What a parquet row says about its file; ``None`` where the file has no such columns."""

    nommls: list[int | None] | None  # one level per track
    exact: list[Loop] | None
    expressive: list[ExpressiveTrack] | None  # the tracks that have expressive loops


def _as_list(value) -> list:
    """A list from an arrow list, a numpy array, its text, or None (empty)."""
    if value is None:
        return []
    if isinstance(value, str):
        return list(ast.literal_eval(value)) if value.strip() else []
    return list(value)


@functools.lru_cache(maxsize=4)
def _annotation_table(path: str) -> dict[str, list]:
    """The annotation columns of a parquet file, one Python list per column (cached: workers read many rows)."""
    names = set(pq.read_schema(path).names)
    wanted = [c for c in (*NOMML_COLUMNS, *EXACT_COLUMNS, *EXPRESSIVE_COLUMNS, EXPRESSIVE_TRACK_COLUMN) if c in names]
    if not wanted:
        return {}
    table = pq.read_table(path, columns=wanted)
    return {name: table.column(name).to_pylist() for name in wanted}


def has_dataset_annotations(path: str) -> bool:
    """Whether a parquet file has any of the GigaMIDI v1.1 NOMML or loop column groups."""
    columns = _annotation_table(str(path))
    return any(c in columns for c in NOMML_COLUMNS) or all(c in columns for c in EXACT_COLUMNS) \
        or all(c in columns for c in EXPRESSIVE_COLUMNS)


def _expressive_track(score: Score, program: int, start: int, end: int) -> int | None:
    """The track an expressive loop of ``program`` belongs to (see the module notes)."""
    candidates = [i for i, track in enumerate(score.tracks) if int(track.program) == int(program)]
    for idx in candidates:
        times = score.tracks[idx].notes.numpy()["time"]
        if np.any((times >= start) & (times < end)):
            return idx
    return candidates[0] if candidates else None


def read_dataset_annotations(path: str, row: int, score: Score) -> DatasetAnnotations:
    """The NOMML, exact and expressive loops that GigaMIDI v1.1 stores for row ``row`` of ``path``.

    :param path: a parquet file.
    :param row: the row of the file.
    :param score: that row's MIDI, read (for the number of tracks and their programs).
    :return: the annotations; a group is None when the file lacks its columns (or, for
        NOMML, when its list does not have one level per track).
    """
    columns = _annotation_table(str(path))
    nommls = None
    name = next((c for c in NOMML_COLUMNS if c in columns), None)
    if name is not None:
        levels = _as_list(columns[name][row])
        if len(levels) == len(score.tracks):
            nommls = [None if v is None or v != v else int(v) for v in levels]
    exact = None
    if all(c in columns for c in EXACT_COLUMNS):
        track, start, end, beats, density = (_as_list(columns[c][row]) for c in EXACT_COLUMNS)
        exact = [Loop(int(t), int(s), int(e), float(b), float(d))
                 for t, s, e, b, d in zip(track, start, end, beats, density, strict=True) if 0 <= int(t) < len(score.tracks)]
    expressive = None
    if all(c in columns for c in EXPRESSIVE_COLUMNS):
        program, start, end, beats, density, score_value = (_as_list(columns[c][row]) for c in EXPRESSIVE_COLUMNS)
        given = _as_list(columns[EXPRESSIVE_TRACK_COLUMN][row]) if EXPRESSIVE_TRACK_COLUMN in columns else None
        per_track: dict[int, list[ExpressiveLoop]] = {}
        for k, (prog, s, e, b, d, lp) in enumerate(zip(program, start, end, beats, density, score_value, strict=True)):
            idx = int(given[k]) if given else _expressive_track(score, int(prog), int(s), int(e))
            if idx is not None and 0 <= idx < len(score.tracks):
                per_track.setdefault(idx, []).append(ExpressiveLoop(idx, int(s), int(e), float(b), float(d), float(lp)))
        expressive = [ExpressiveTrack(idx, loops[0].loopability, loops) for idx, loops in sorted(per_track.items())]
    return DatasetAnnotations(nommls, exact, expressive)
