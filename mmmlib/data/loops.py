"""Loop detection: the GigaMIDI annotation detector (Hsu, Liu & Chen 2001 correlative matrix), fast.

The GigaMIDI loops (``loops_nomml`` in the GigaMIDI repository) are found per track on
a sequence of *note sets* (notes sharing start and end ticks, compared by duration and
pitch set, not by time) interleaved with one empty *barline* set per bar. The reference
fills an ``n x n`` matrix whose cell ``(i, j)`` counts how many sets match backwards
along its diagonal, a run being allowed to *start* only at a barline, then keeps the
cells worth ``min_rep_notes + 1``. That is O(n^2) Python work per track (minutes on a
piano performance). We find the same cells without the matrix:

- along diagonal ``d`` a run starts at the first barline of each maximal stretch of
  matching sets and lasts to the end of that stretch, so a candidate is a pair of
  barlines ``(b, t = b + d)`` whose next ``min_rep_notes + 1`` sets match;
- no run is already active at ``(b - 1, t - 1)`` iff the bar segments (barline up to
  the next barline) that precede ``b`` and ``t`` differ: a match across the previous
  barline would need the whole previous segments to be equal.

So candidates come from comparing, for pairs of barlines whose next sets repeat, two
integer ids per barline (vectorised; O(bars^2) at worst, never O(sets^2)). The sequential
parts of the reference (the sub-loop filter, the density and "loop exists" tests) are kept
as they are; they are cheap. ``tests/loops_oracle.py`` holds the literal matrix version
this one must equal, loop for loop.

Reference quirks reproduced on purpose: loops are compared to kept loops only on their
first ``round(min_rep_beats)`` sets, and a new loop matching kept loop 0 is dropped even
when longer (the reference only replaces indices > 0). ``get_duration_beats`` exists in
two published versions, chosen by ``duration_offset``: with ``-1`` (default, the later
version) spans not starting on the first beat of the score get their exact beat count
and spans starting on it one beat less; with ``0`` it is exact from the first beat and
one beat more elsewhere.

Where we differ, only on inputs that make the reference fail: a span whose end is not on
a beat (the reference indexes the beat array with a tick; unreachable from
:func:`detect_loops`, as miditok puts every bar on a beat) is skipped; the caller's score
is not given a 4/4 time signature in place. The reference's int16 matrix wraps after 32767 matching sets; this
never changes its output (runs are shorter than the 60000 sets a track can have), so we
do not model it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmmlib.core.errors import ConfigError
from mmmlib.data.loop_shared import bars_and_beats, filter_sub_loops, note_set_runs

if TYPE_CHECKING:
    from symusic import Score, Track

# Cells per block when pairing barlines, to bound memory on tracks with thousands of bars.
_PAIR_BLOCK_CELLS = 1 << 22


@dataclass(frozen=True)
class Loop:
    """One detected loop: from a bar line to a later one where the track's content starts over."""

    track_idx: int
    start_tick: int
    end_tick: int
    duration_beats: float
    note_density: float


@dataclass(frozen=True)
class LoopOptions:
    """Detector settings; the defaults are those of the GigaMIDI annotation."""

    min_rep_notes: int = 4  # sets that must match after the barline for a repetition
    min_rep_beats: float = 2.0  # minimum loop length, and sets compared between loops
    min_beats: float = 4.0  # loop duration bounds, in (rounded) beats
    max_beats: float = 32.0
    min_loop_note_density: float = 0.5  # sounding sets per beat
    duration_offset: int = -1  # added to get_duration_beats: -1 (later version) or 0
    min_notes_per_track: int = 5
    max_notes_per_track: int = 50000
    max_bars_per_track: int = 10000

    def __post_init__(self) -> None:
        if self.min_rep_notes < 1:
            raise ConfigError("min_rep_notes", f"must be >= 1, got {self.min_rep_notes}")
        if int(round(self.min_rep_beats)) < 1:
            raise ConfigError("min_rep_beats", f"must round to >= 1, got {self.min_rep_beats}")
        if int(self.duration_offset) != self.duration_offset:  # whole beats keep round() exact
            raise ConfigError("duration_offset", f"must be a whole number, got {self.duration_offset}")


def detect_loops(score: Score, **options) -> list[Loop]:
    """Detect loops in every track of a score, as the GigaMIDI annotation does.

    :param score: tick-time score (as read by ``symusic.Score(path)``); not modified.
    :param options: fields of :class:`LoopOptions` (e.g. ``duration_offset=0``).
    :return: loops ordered by track, then in the order the reference emits them.
    """
    opts = LoopOptions(**options)
    grid = bars_and_beats(score)
    if grid is None:
        return []
    loops = []
    for track_idx, track in enumerate(score.tracks):
        loops += detect_track_loops(track, grid[0], grid[1], track_idx, opts)
    return loops


def _cut_at_track_end(ticks: np.ndarray, end_tick: int) -> np.ndarray:
    """Keep the ticks before the first one past ``end_tick`` (as the reference cuts)."""
    past = np.flatnonzero(ticks > end_tick)
    return ticks[: past[0]] if len(past) else ticks


def detect_track_loops(
    track: Track,
    bars_ticks: np.ndarray,
    beats_ticks: np.ndarray,
    track_idx: int = 0,
    options: LoopOptions | None = None,
) -> list[Loop]:
    """Detect the loops of one track given the score's bar and beat ticks.

    :param track: tick-time track.
    :param bars_ticks: ticks of every bar of the score (ascending).
    :param beats_ticks: ticks of every beat of the score (ascending).
    :param track_idx: index stored in the returned loops.
    :param options: detector settings (defaults when None).
    :return: the track's loops in reference order.
    """
    opts = options or LoopOptions()
    if not opts.min_notes_per_track <= len(track.notes) <= opts.max_notes_per_track:
        return []
    end_tick = track.end()
    bars = _cut_at_track_end(np.asarray(bars_ticks, dtype=np.int64), end_tick)
    beats = _cut_at_track_end(np.asarray(beats_ticks, dtype=np.int64), end_tick)
    if len(bars) > opts.max_bars_per_track:
        return []
    seq = _note_set_sequence(track, bars)
    m_idx, n_idx = _candidate_barline_pairs(seq, opts.min_rep_notes + 1)
    barline_ticks = seq.starts[seq.barline_pos]  # = bars, but in sequence order whatever the input
    durations = _duration_beats(barline_ticks[m_idx], barline_ticks[n_idx], beats, opts.duration_offset)
    return _select_loops(seq, m_idx, n_idx, durations, track_idx, opts)


@dataclass
class _Sequence:
    """Note sets and barlines merged in time order, as integer keys."""

    keys: np.ndarray  # int64 key per element; -1 for barlines, equal keys = equal sets
    starts: np.ndarray  # start tick per element (ascending)
    barline_pos: np.ndarray  # positions of the barlines (one per bar), ascending
    cum_pitched: np.ndarray  # cum_pitched[i] = number of note sets in elements [0, i)
    cum_sounding: np.ndarray  # same for note sets with end != start (counted by density)


def _note_set_keys(track: Track) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group consecutive notes with equal (start, end) into sets; key each set.

    :return: ``(starts, is_sounding, keys)``: int64 keys >= 0, equal iff same duration
        and same pitch set (the reference's NoteSet equality).
    """
    start, end, first, byte = note_set_runs(track)
    pitch_code = np.minimum.reduceat(byte, first)  # the pitch, for single-pitch sets
    is_chord = pitch_code != np.maximum.reduceat(byte, first)
    if is_chord.any():  # chords: one id per distinct 256-bit pitch bitset, after the pitches
        bit = np.left_shift(np.uint64(1), (byte & 63).astype(np.uint64))
        words = np.stack([np.bitwise_or.reduceat(np.where(byte >> 6 == w, bit, np.uint64(0)), first)
                          for w in range(4)], axis=1)
        _, chord_id = np.unique(words[is_chord], axis=0, return_inverse=True)
        pitch_code[is_chord] = 256 + chord_id.reshape(-1)
    duration = (end - start)[first]
    # (duration, pitch code) packed injectively: < 2^33 durations times < 2^17 codes
    keys = (duration - duration.min()) * (256 + len(first)) + pitch_code
    return start[first], duration != 0, keys


def _note_set_sequence(track: Track, bars: np.ndarray) -> _Sequence:
    """Merge note sets and barlines with a stable sort on start (sets before barlines)."""
    set_starts, set_sounding, set_keys = _note_set_keys(track)
    order = np.argsort(np.concatenate([set_starts, bars]), kind="stable")
    is_barline = np.concatenate([np.zeros(len(set_starts), bool), np.ones(len(bars), bool)])[order]
    sounding = np.concatenate([set_sounding, np.zeros(len(bars), bool)])[order]
    keys = np.concatenate([set_keys, np.full(len(bars), -1, np.int64)])[order]
    zero = np.zeros(1, dtype=np.int64)
    return _Sequence(
        keys=keys,
        starts=np.concatenate([set_starts, bars])[order],
        barline_pos=np.flatnonzero(is_barline),
        cum_pitched=np.concatenate([zero, np.cumsum(~is_barline)]),
        cum_sounding=np.concatenate([zero, np.cumsum(sounding)]),
    )


def _barline_ids(seq: _Sequence, run_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer ids, per barline, of what must match for a run to start there.

    :return: ``(gram, prev_segment)``: id of the ``run_len`` keys from the barline on
        (-1 when the sequence ends first), and id of the bar segment (barline up to the
        next barline) just before it (-1 for the first barline: it has none).
    """
    keys = seq.keys.tolist()
    pos = seq.barline_pos.tolist()
    gram_ids: dict[tuple, int] = {}
    gram = [gram_ids.setdefault(tuple(keys[p:p + run_len]), len(gram_ids)) if p + run_len <= len(keys)
            else -1 for p in pos]
    segment_ids: dict[tuple, int] = {}
    prev_segment = [-1] + [segment_ids.setdefault(tuple(keys[a:b]), len(segment_ids))
                           for a, b in zip(pos[:-1], pos[1:], strict=True)]
    return np.asarray(gram, dtype=np.int64), np.asarray(prev_segment[:len(pos)], dtype=np.int64)


def _candidate_barline_pairs(seq: _Sequence, run_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Barline index pairs ``(m, n)``, m < n, whose matrix run reaches ``run_len``.

    The run on diagonal ``pos[n] - pos[m]`` starts at barline m iff the next ``run_len``
    sets match and no run is active just before, i.e. the previous bar segments differ
    (a match across the previous barline needs the whole previous segments equal).

    :return: two int arrays sorted by (m, n), i.e. in the reference's np.where order.
    """
    gram, prev_segment = _barline_ids(seq, run_len)
    counts = np.bincount(gram[gram >= 0], minlength=1)
    rows = np.flatnonzero((gram >= 0) & (counts[np.maximum(gram, 0)] > 1))  # repeated grams only
    found_m, found_n = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    block = max(1, _PAIR_BLOCK_CELLS // max(len(rows), 1))
    for lo in range(0, len(rows), block):  # dense pair tests, a block of rows at a time
        m = rows[lo:lo + block]
        ok = (gram[m][:, None] == gram[rows][None, :]) & (rows[None, :] > m[:, None])
        ok &= prev_segment[m][:, None] != prev_segment[rows][None, :]
        i, j = np.nonzero(ok)  # row-major: already sorted by (m, n)
        found_m.append(m[i])
        found_n.append(rows[j])
    return np.concatenate(found_m), np.concatenate(found_n)


def _duration_beats(starts: np.ndarray, ends: np.ndarray, beats: np.ndarray, offset: int) -> np.ndarray:
    """The reference ``get_duration_beats`` for each (start, end) tick pair, vectorised.

    It counts beat indices between start and end, plus one when start is not the first
    beat, plus ``offset``. When ``end`` is not a beat tick the reference indexes the beat
    array with a tick value (meaningless, or IndexError) and raises TypeError past the
    last beat; we return NaN there and the caller skips the candidate. Through
    :func:`detect_loops` it never happens: miditok's bars are every ``numerator``-th beat.

    :return: float64 durations, NaN where the reference value is undefined.
    """
    if len(beats) == 0:
        return np.full(len(starts), np.nan)
    first_in = np.searchsorted(beats, starts, side="left")
    # the reference only looks for the end among beats after the first one inside
    last_in = np.maximum(np.searchsorted(beats, ends, side="left"), first_in + 1)
    valid = last_in < len(beats)
    first_in, last_in = np.minimum(first_in, len(beats) - 1), np.minimum(last_in, len(beats) - 1)
    valid &= beats[last_in] == ends
    before = (first_in > 0) & (beats[first_in] > beats[np.maximum(first_in - 1, 0)])
    duration = (last_in - first_in).astype(np.float64) + np.where(before, 1.0, 0.0) + offset
    return np.where(valid, duration, np.nan)


def _candidate_cells(seq: _Sequence, m_idx: np.ndarray, n_idx: np.ndarray, durations: np.ndarray,
                     opts: LoopOptions) -> dict[float, list[tuple[int, int]]]:
    """Matrix cells of the candidates within the duration bounds, keyed by duration.

    Durations are whole numbers here (NaN aside), so the reference's ``round(_, 2)`` is
    the identity. Each list keeps the reference's np.where (row-major) order.
    """
    inside = (durations >= opts.min_beats) & (durations <= opts.max_beats)  # False on NaN
    shift = opts.min_rep_notes  # the candidate cell is this far down the run's diagonal
    xs = (seq.barline_pos[m_idx[inside]] + shift).tolist()
    ys = (seq.barline_pos[n_idx[inside]] + shift).tolist()
    cells: dict[float, list[tuple[int, int]]] = {}
    for x, y, duration in zip(xs, ys, durations[inside].tolist(), strict=True):
        cells.setdefault(duration, []).append((x, y))
    return cells


def _select_loops(seq: _Sequence, m_idx: np.ndarray, n_idx: np.ndarray,
                  durations: np.ndarray, track_idx: int, opts: LoopOptions) -> list[Loop]:
    """Bound, filter and de-duplicate the candidates exactly as the reference does."""
    shift = opts.min_rep_notes
    num_compared = int(round(opts.min_rep_beats))
    kept: list[Loop] = []
    kept_len: list[int] = []  # number of sets in each kept loop (barline to barline)
    slot_of_prefix: dict[tuple, int] = {}  # kept loops always have distinct compared prefixes
    for x, y, duration in filter_sub_loops(_candidate_cells(seq, m_idx, n_idx, durations, opts)):
        begin, end = x - shift, y - shift  # run starts: where the reference's walk lands
        if duration < opts.min_rep_beats:  # the unrounded duration: the same number here
            continue
        if seq.cum_pitched[end] == seq.cum_pitched[begin]:  # no note set: an empty loop
            continue
        density = int(seq.cum_sounding[end + 1] - seq.cum_sounding[begin]) / duration
        if density < opts.min_loop_note_density:
            continue
        loop = Loop(track_idx, int(seq.starts[begin]), int(seq.starts[end]), duration, density)
        # the reference compares the first sets of the two loops (IndexError when a loop
        # has fewer sets than that, impossible with the default 2); equal prefixes = match
        prefix = tuple(seq.keys[begin:begin + num_compared].tolist())
        slot = slot_of_prefix.get(prefix)
        if slot is None:
            slot_of_prefix[prefix] = len(kept)
            kept.append(loop)
            kept_len.append(end - begin + 1)
        elif slot > 0 and end - begin + 1 >= kept_len[slot]:  # reference never replaces slot 0
            kept[slot], kept_len[slot] = loop, end - begin + 1
    return kept


def main(argv: list[str] | None = None) -> int:
    """``python -m mmmlib loops [--expressive [--mode M]] FILE...``: one JSON object per detected loop, on stdout.

    Each line is ``{"file", "track_idx", "start_tick", "end_tick", "duration_beats",
    "note_density"}``, plus the track's ``loopability`` with ``--expressive``
    (:mod:`mmmlib.data.expressive`, every track of every file); a file that cannot be read
    is named on stderr and skipped.

    :param argv: command-line arguments (``sys.argv[1:]`` when None).
    :return: the exit status: 0, or 1 when some file could not be read.
    """
    from mmmlib.core.midi import read_midi_files
    from mmmlib.data.expressive import DEFAULT_MODE, MODES, print_expressive_loops

    parser = argparse.ArgumentParser(
        prog="mmmlib loops",
        description="Detect loops in MIDI files as the GigaMIDI annotation does: one JSON object per loop.",
    )
    parser.add_argument("files", nargs="+", help="MIDI files to analyse")
    parser.add_argument("--duration-offset", type=int, default=LoopOptions.duration_offset,
                        help="get_duration_beats convention: -1 (later reference version, default) or 0")
    parser.add_argument("--expressive", action="store_true",
                        help="expressive loops (GigaMIDI v1.1) instead of exact ones, with each track's loopability")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                        help=f"with --expressive: 'reference' reproduces GigaMIDI v1.1, 'default' fixes its "
                             f"quirks (default: {DEFAULT_MODE})")
    args = parser.parse_args(argv)
    if args.expressive:
        return print_expressive_loops(args.files, args.mode)
    failed: list[str] = []
    for path, score in read_midi_files(args.files, failed):
        for loop in detect_loops(score, duration_offset=args.duration_offset):
            print(json.dumps({"file": path, **asdict(loop)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
