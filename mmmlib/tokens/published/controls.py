"""The published tokenizer's track-level controls, as the reference computes them, vectorised.

All controls are computed on the *preprocessed* track (1920 ticks per quarter, snapped
durations), against the score's bar ticks (MidiTok's ``get_bars_ticks`` with
``only_notes_onsets=True``), and come in this order (the order of the tokenizer's
attribute controls): onset polyphony, note density, note durations, repetition, NOMML, loops.

Reference behaviours reproduced on purpose:

- ``ACTrackOnsetPolyphonyMin`` is always the configured minimum (1): MidiTok lowers any
  larger minimum to it;
- ``ACTrackNoteDurationThirtySecond`` is never emitted: five factors for six names;
- repetition compares onset/offset piano-roll cells of each bar with the next three bars
  of equal length (the last bar only as a second bar), and is absent when no pair exists;
- NOMML is the median metric level of the onsets at 1920 ticks per quarter (every binary
  and ternary period is a whole number of ticks there, so :mod:`mmmlib.data.nomml`'s
  integer test gives the fork's float ``%`` test exactly);
- loop controls: the count (``5+`` from five), then one ``ACLoopDurationQuantile`` per
  *distinct* duration bin, ascending; durations are in quarters of the *source* file
  (``(end - start) / tpq``), bins ``(lo, hi]`` over the edges 6/8/12/16/24/32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from symusic import Track

from mmmlib.data.nomml import nomml_from_onsets
from mmmlib.tokens.published.vocab import TPQ

LOOP_EDGES = (6, 8, 12, 16, 24, 32)  # loop duration quantile edges, in quarters
MAX_LOOPS = 5
DURATION_NAMES = ("Whole", "Half", "Quarter", "Eight", "Sixteenth")
DURATION_FACTORS = (4, 2, 1, 0.5, 0.25)  # of a quarter; "ThirtySecond" has no factor


def onset_polyphony(onsets: np.ndarray, lo: int, hi: int) -> list[str]:
    """``ACTrackOnsetPolyphonyMin/Max``: the minimum is always ``lo`` (MidiTok's rule).

    :param onsets: note onset ticks.
    :param lo: configured minimum polyphony.
    :param hi: configured maximum polyphony.
    :return: the two tokens.
    """
    _, counts = np.unique(onsets, return_counts=True)
    low = min(int(counts.min()), lo)
    return [
        f"ACTrackOnsetPolyphonyMin_{max(low, lo)}",
        f"ACTrackOnsetPolyphonyMax_{min(int(counts.max()), hi)}",
    ]


def note_density(onsets: np.ndarray, bars: Sequence[int], track_end: int, hi: int) -> list[str]:
    """``ACTrackNoteDensityMin/Max``: fewest and most onsets in a bar, ``hi+`` from ``hi``.

    :param onsets: note onset ticks.
    :param bars: bar ticks of the score.
    :param track_end: the track's end tick (symusic ``Track.end()``).
    :param hi: configured maximum density.
    :return: the two tokens.
    """
    edges = list(bars)
    if track_end > edges[-1]:
        edges.append(track_end + 1)
    if len(edges) < 2:  # a single bar line and nothing after it: one empty-edged bin
        edges.append(edges[-1] + 1)
    hist, _ = np.histogram(onsets, bins=edges)
    low, high = int(hist.min()), int(hist.max())
    if low >= hi:
        return [f"ACTrackNoteDensityMin_{hi}+", f"ACTrackNoteDensityMax_{hi}+"]
    return [f"ACTrackNoteDensityMin_{low}", f"ACTrackNoteDensityMax_{f'{hi}+' if high >= hi else high}"]


def note_durations(durations: np.ndarray) -> list[str]:
    """``ACTrackNoteDuration*``: whether a whole, half... sixteenth note duration occurs.

    :param durations: note durations in ticks at 1920 per quarter.
    :return: five tokens.
    """
    present = set(np.unique(durations).tolist())
    return [
        f"ACTrackNoteDuration{n}_{int(TPQ * f in present)}"
        for n, f in zip(DURATION_NAMES, DURATION_FACTORS, strict=True)
    ]


def _merged_frames(
    notes: dict[str, np.ndarray], lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pitch, the union of the notes' ``[start, end)`` spans: ``(pitch, start, end)`` arrays."""
    keep = (notes["pitch"] >= lo) & (notes["pitch"] < hi)
    pitch = notes["pitch"][keep].astype(np.int64) - lo
    start = notes["time"][keep].astype(np.int64)
    end = start + notes["duration"][keep].astype(np.int64)
    order = np.lexsort((start, pitch))
    pitch, start, end = pitch[order], start[order], end[order]
    if len(pitch) == 0:
        return pitch, start, end
    # a span opens a new run when its pitch changes or it starts after every earlier end
    new_pitch = np.r_[True, pitch[1:] != pitch[:-1]]
    # running max of the ends within a pitch: restart the max at each pitch
    group = np.cumsum(new_pitch) - 1
    offset = group * (int(end.max()) + 1)
    reach = np.maximum.accumulate(end + offset) - offset
    opens = new_pitch | (start > np.r_[-1, reach[:-1]])
    runs = np.cumsum(opens) - 1
    run_end = np.zeros(runs[-1] + 1, dtype=np.int64)
    np.maximum.at(run_end, runs, end)
    return pitch[opens], start[opens], run_end


def _ragged(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + c)`` for each ``(s, c)``."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    base = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts)
    return base + np.arange(total)


def _pair_overlaps(key_a, len_a, key_b, len_b, weights_pair, num_pairs):
    """Summed overlap per pair of two interval sets given as (pair-keyed start, length)."""
    keys = np.concatenate((key_a, key_a + len_a, key_b, key_b + len_b))
    delta = np.concatenate(
        (np.ones_like(key_a), -np.ones_like(key_a), np.ones_like(key_b), -np.ones_like(key_b))
    )
    pair = np.concatenate((weights_pair[0], weights_pair[0], weights_pair[1], weights_pair[1]))
    order = np.argsort(keys, kind="stable")
    keys, delta, pair = keys[order], delta[order], pair[order]
    cover = np.cumsum(delta)
    seg = np.diff(keys, append=keys[-1] if len(keys) else 0)
    both = cover == 2
    return np.bincount(pair[both], weights=seg[both], minlength=num_pairs)


def repetition(
    notes: dict[str, np.ndarray],
    bars: Sequence[int],
    track_end: int,
    pitch_range: tuple[int, int],
    num_bins: int,
    num_consec: int,
) -> list[str]:
    """``ACTrackRepetition``: mean share of a bar's piano-roll cells found in the next bars.

    MidiTok compares ``track.pianoroll(["onset", "offset"])[bar]`` with the same slice of
    each of the ``num_consec - 1`` following bars of equal length (the roll has
    ``track_end + 1`` ticks). The golden files show that symusic 0.5, which the reference
    ran, filled the second channel as a *frame* (every tick a note sounds), not as offsets
    (symusic 0.6 does): with offsets 15 of 74 golden tracks get another level. So we count
    onset cells plus sounding cells, bar against bar, on note spans merged per pitch.

    :param notes: the track's notes as symusic's ``numpy()`` dict.
    :param bars: bar ticks of the score.
    :param track_end: the track's end tick.
    :param pitch_range: the roll's pitch range ``[lo, hi)``.
    :param num_bins: number of repetition levels.
    :param num_consec: bars compared, the current one included.
    :return: one token, or none when no bar pair was compared.
    """
    length = track_end + 1
    lo, hi = pitch_range
    bars = np.asarray(bars, dtype=np.int64)
    n = len(bars)
    stop = np.minimum(np.append(bars[1:], length), length)
    lengths = np.maximum(0, stop - bars)
    span = int(lengths.max()) + 1 if n else 1
    # onset cells, as sorted codes pitch * span + tick-in-bar, grouped by bar
    keep = (notes["pitch"] >= lo) & (notes["pitch"] < hi)
    on_t = notes["time"][keep].astype(np.int64)
    on_p = notes["pitch"][keep].astype(np.int64) - lo
    on_bar = np.searchsorted(bars, on_t, side="right") - 1
    on_code = np.unique(on_bar * (span * (hi - lo)) + on_p * span + (on_t - bars[on_bar]))
    on_bar = on_code // (span * (hi - lo))
    on_rel = on_code % (span * (hi - lo))
    on_first = np.searchsorted(on_bar, np.arange(n))
    on_count = np.diff(np.r_[on_first, len(on_bar)])
    # frame pieces: merged spans cut at bar lines
    fp, fs, fe = _merged_frames(notes, lo, hi)
    b0 = np.searchsorted(bars, fs, side="right") - 1
    b1 = np.searchsorted(bars, fe - 1, side="right") - 1
    reps = b1 - b0 + 1
    piece_bar = _ragged(b0, reps)
    src = np.repeat(np.arange(len(fs)), reps)
    p_start = np.maximum(fs[src], bars[piece_bar]) - bars[piece_bar]
    p_end = np.minimum(fe[src], stop[piece_bar]) - bars[piece_bar]
    ok = p_end > p_start
    piece_bar, p_code, p_len = piece_bar[ok], fp[src][ok] * span + p_start[ok], (p_end - p_start)[ok]
    order = np.lexsort((p_code, piece_bar))
    piece_bar, p_code, p_len = piece_bar[order], p_code[order], p_len[order]
    fr_first = np.searchsorted(piece_bar, np.arange(n))
    fr_count = np.diff(np.r_[fr_first, len(piece_bar)])
    cells = on_count + np.bincount(piece_bar, weights=p_len, minlength=n).astype(np.int64)
    # the bar pairs MidiTok compares
    first = [b for b in range(n - 1) if bars[b] <= length and cells[b] > 0]
    pairs = [(b, c) for b in first for c in range(b + 1, min(n, b + num_consec)) if lengths[c] == lengths[b]]
    if not pairs:
        return []
    pb, pc = (np.array(x, dtype=np.int64) for x in zip(*pairs, strict=True))
    num = len(pb)
    big = span * (hi - lo) + 1
    # common onset cells: equal codes once keyed by pair
    ia, ib = _ragged(on_first[pb], on_count[pb]), _ragged(on_first[pc], on_count[pc])
    ja, jb = np.repeat(np.arange(num), on_count[pb]), np.repeat(np.arange(num), on_count[pc])
    both = np.sort(np.concatenate((ja * big + on_rel[ia], jb * big + on_rel[ib])))
    dup = both[1:][both[1:] == both[:-1]] // big
    common = np.bincount(dup, minlength=num).astype(np.float64)
    fa, fb = _ragged(fr_first[pb], fr_count[pb]), _ragged(fr_first[pc], fr_count[pc])
    ka, kb = np.repeat(np.arange(num), fr_count[pb]), np.repeat(np.arange(num), fr_count[pc])
    common += _pair_overlaps(
        ka * big + p_code[fa], p_len[fa], kb * big + p_code[fb], p_len[fb], (ka, kb), num
    )
    sims = common / cells[pb]
    levels = np.linspace(0, 1, num_bins)
    return [f"ACTrackRepetition_{levels[np.abs(levels - np.mean(sims)).argmin()]:.2f}"]


def nomml(onsets: np.ndarray) -> list[str]:
    """``ACMedianMetricLevel``: the track's NOMML at 1920 ticks per quarter.

    :param onsets: note onset ticks of the preprocessed track.
    :return: one token (none for a track without notes).
    """
    level = nomml_from_onsets(onsets, TPQ)
    return [] if level is None else [f"ACMedianMetricLevel_{level}"]


def loop_bin(duration_quarters: float) -> int:
    """Loop duration bin, 1..7: the first edge not below the duration, 7 beyond 32.

    :param duration_quarters: loop length in quarter notes.
    :return: the bin (bins are ``(lo, hi]``).
    """
    i = 0
    while i < len(LOOP_EDGES) and duration_quarters > LOOP_EDGES[i]:
        i += 1
    return i + 1


def loop_controls(spans: Sequence[tuple[int, int]], tpq: int) -> list[str]:
    """``ACLoopCount`` then one ``ACLoopDurationQuantile`` per distinct bin, ascending.

    :param spans: the track's loops as ``(start, end)`` ticks of the source file.
    :param tpq: the source file's ticks per quarter.
    :return: the tokens.
    """
    count = len(spans)
    tokens = [f"ACLoopCount_{count if count < MAX_LOOPS else f'{MAX_LOOPS}+'}"]
    bins = sorted({loop_bin((end - start) / tpq) for start, end in spans})
    return tokens + [f"ACLoopDurationQuantile_{b}" for b in bins]


def track_controls(
    track: Track,
    bars: Sequence[int],
    config: dict,
    loop_spans: Sequence[tuple[int, int]] | None,
    source_tpq: int,
) -> list[str]:
    """Every track-level control of the tokenizer for one preprocessed track, in order.

    :param track: preprocessed track (1920 ticks per quarter), with notes.
    :param bars: bar ticks of the preprocessed score.
    :param config: the tokenizer's ``config`` dict (``ac_*`` settings).
    :param loop_spans: the track's loops in source ticks; None leaves out the loop controls.
    :param source_tpq: ticks per quarter of the source file (loop durations).
    :return: control tokens.
    """
    notes = track.notes.numpy()
    if len(notes["time"]) == 0:
        return []
    onsets = notes["time"].astype(np.int64)
    end = int(track.end())
    tokens: list[str] = []
    if config.get("ac_polyphony_track"):
        tokens += onset_polyphony(onsets, int(config["ac_polyphony_min"]), int(config["ac_polyphony_max"]))
    if config.get("ac_note_density_track"):
        tokens += note_density(onsets, bars, end, int(config["ac_note_density_track_max"]))
    if config.get("ac_note_duration_track"):
        tokens += note_durations(notes["duration"])
    if config.get("ac_repetition_track"):
        tokens += repetition(
            notes,
            bars,
            end,
            tuple(config["pitch_range"]),
            int(config["ac_repetition_track_num_bins"]),
            int(config["ac_repetition_track_num_consec_bars"]),
        )
    if config.get("ac_nomml_track"):
        tokens += nomml(onsets)
    if config.get("ac_loops_track") and loop_spans is not None:
        tokens += loop_controls(loop_spans, source_tpq)
    return tokens
