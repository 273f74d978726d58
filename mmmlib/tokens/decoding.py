"""From tokens (possibly generated, possibly malformed) back to a score, never raising.

:func:`decode_tokens` puts infilled bars back in place of their ``Infill_Bar``
placeholders, decodes each track with MidiTok's REMI decoder (the one MMM uses), and in
expressive mode moves each note by its ``MicroTiming`` offset. Whatever cannot be
decoded is skipped and counted in :attr:`DecodeResult.num_errors`: a placeholder without
its fill (or a fill without a placeholder), tokens outside any track, token successions
the grammar (:func:`mmmlib.tokens.vocab.grammar_rules`) does not allow, a track MidiTok fails on.

:func:`roundtrip_file` measures what a file loses through encode -> ids -> decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from miditok import TokSequence
from symusic import Score, Tempo, TimeSignature

from mmmlib.data.nomml import track_nomml
from mmmlib.tokens.microtiming import MICROTIMING_TYPE, apply_offsets
from mmmlib.tokens.special import BAR, FILL_END, FILL_START, INFILL_BAR, TRACK_END, TRACK_START
from mmmlib.tokens.vocab import count_grammar_errors, families

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mmmlib.tokens.tokenizer import MMMLoop

IGNORED_OUTSIDE_TRACKS = frozenset({"PAD_None", "BOS_None", "EOS_None"})


@dataclass
class DecodeResult:
    """A decoded score and the number of problems met while decoding it."""

    score: Score
    num_errors: int = 0


def resolve_infill(tokens: Sequence[str]) -> tuple[list[str], int]:
    """Replace each ``Infill_Bar`` by ``Bar_None`` + the next ``FillBar_Start ... FillBar_End`` content.

    :return: the tokens without infill markup, and the number of mismatches (a placeholder
        left empty, a fill without a placeholder, a fill without its end).
    """
    if INFILL_BAR not in tokens and FILL_START not in tokens and FILL_END not in tokens:
        return list(tokens), 0
    main, fills, errors = [], [], 0
    current: list[str] | None = None
    for token in tokens:
        if token == FILL_START:
            if current is not None:  # previous fill never ended: keep what it had
                fills.append(current)
                errors += 1
            current = []
        elif token == FILL_END:
            if current is None:
                errors += 1
            else:
                fills.append(current)
                current = None
        elif current is not None:
            current.append(token)
        else:
            main.append(token)
    if current is not None:  # generation stopped inside a fill
        fills.append(current)
        errors += 1
    out, used = [], 0
    for token in main:
        if token != INFILL_BAR:
            out.append(token)
        elif used < len(fills):
            out += [BAR, *fills[used]]
            used += 1
        else:
            out.append(BAR)  # an empty bar keeps the following bars in place
            errors += 1
    return out, errors + len(fills) - used


def split_tracks(tokens: Sequence[str]) -> tuple[list[list[str]], int]:
    """Token lists of each ``Track_Start ... Track_End`` (markers excluded), and stray tokens count.

    A track cut short (no ``Track_End``) still counts as a track.
    """
    tracks, errors = [], 0
    current: list[str] | None = None
    for token in tokens:
        if token == TRACK_START:
            if current is not None:
                tracks.append(current)
                errors += 1
            current = []
        elif token == TRACK_END:
            if current is None:
                errors += 1
            else:
                tracks.append(current)
                current = None
        elif current is not None:
            current.append(token)
        elif token not in IGNORED_OUTSIDE_TRACKS:
            errors += 1
    if current is not None:
        tracks.append(current)
    return tracks, errors


def strip_track(tok: MMMLoop, tokens: Sequence[str]) -> tuple[list[str], dict[int, int], int]:
    """Tokens MidiTok's REMI decoder understands, plus the microtiming offsets.

    Controls are dropped (they steer generation, they do not change the music),
    ``MicroTiming`` values are attached to the token before them (a note's ``Duration``),
    stray special tokens are dropped and counted.

    :return: ``(tokens, offsets by index in tokens, errors)``.
    """
    family = families(tok)
    kept: list[str] = []
    offsets: dict[int, int] = {}
    errors = 0
    for token in tokens:
        kind = family.get(token, "")
        if kind == MICROTIMING_TYPE:
            if kept:
                offsets[len(kept) - 1] = int(token[len(MICROTIMING_TYPE) + 1:])
            else:
                errors += 1
        elif kind.startswith("AC"):
            continue
        elif kind and "_" not in kind:  # a token type; special tokens (and unknown ones) are not
            kept.append(token)
        else:
            errors += 1
    return kept, offsets, errors


def note_offsets(tok: MMMLoop, tokens: Sequence[str], offsets: dict[int, int]) -> np.ndarray:
    """Offset of each note REMI will decode from ``tokens``, in decoding order.

    REMI makes a note of a ``Pitch``/``PitchDrum`` inside the pitch range that is directly
    followed by a ``Velocity`` and a ``Duration``; the offset is the ``MicroTiming`` after
    that ``Duration`` (0 when there is none).
    """
    low, high = tok.config.pitch_range
    values = []
    for i in range(len(tokens) - 2):
        token = tokens[i]
        if token[0] != "P" or not token.startswith(("Pitch_", "PitchDrum_")):
            continue
        if low <= int(token.rsplit("_", 1)[1]) <= high and tokens[i + 1][0] == "V" and tokens[i + 2][0] == "D":
            values.append(offsets.get(i + 2, 0))  # V/D: Velocity and Duration are the only V and D tokens
    return np.asarray(values, dtype=np.int64)


def decode_tokens(tok: MMMLoop, tokens: Sequence[str]) -> DecodeResult:
    """Decode an MMM token sequence (tracks, then optional fills); never raises.

    :param tok: the tokenizer.
    :param tokens: base tokens (see :meth:`MMMLoop.ids_to_tokens` for ids).
    :return: the score (at ``tok.output_tpq`` ticks per quarter) and the error count.
    """
    plain, errors = resolve_infill(tokens)
    tracks, stray = split_tracks(plain)
    errors += stray
    score = Score(tok.time_division)
    offsets: list[np.ndarray | None] = []
    for ti, track_tokens in enumerate(tracks):
        errors += count_grammar_errors(tok, [TRACK_START, *track_tokens, TRACK_END])
        kept, attached, stripped_errors = strip_track(tok, track_tokens)
        errors += stripped_errors
        try:
            decoded = tok.base_tokenizer._tokens_to_score([TokSequence(tokens=kept)])
        except Exception:  # malformed beyond what REMI tolerates: skip the track
            errors += 1
            continue
        if ti == 0 or len(score.tempos) == 0:  # global events come from the first track, as in MMM
            score.tempos = decoded.tempos
            score.time_signatures = decoded.time_signatures
        for track in decoded.tracks:
            track_offsets = note_offsets(tok, kept, attached)
            if len(track_offsets) != len(track.notes):
                errors += 1
                track_offsets = None
            score.tracks.append(track)
            offsets.append(track_offsets)
    if tok.is_expressive:
        score = apply_offsets(score, offsets, tok.microtiming_resolution)
    if len(score.tempos) == 0 or score.tempos[0].time != 0:
        score.tempos.insert(0, Tempo(0, float(tok.default_tempo)))
    if len(score.time_signatures) == 0 or score.time_signatures[0].time != 0:
        score.time_signatures.insert(0, TimeSignature(0, 4, 4))
    return DecodeResult(score, errors)


def max_onset_error(raw_track, raw_tpq: int, decoded_track, decoded_tpq: int) -> float:
    """Largest distance, in raw ticks, from a decoded onset to the nearest raw onset of its pitch."""
    raw = raw_track.notes.numpy()
    dec = decoded_track.notes.numpy()
    worst = 0.0
    for pitch in np.unique(dec["pitch"]):
        candidates = np.sort(raw["time"][raw["pitch"] == pitch].astype(np.float64))
        if len(candidates) == 0:
            return float("inf")
        times = dec["time"][dec["pitch"] == pitch] * raw_tpq / decoded_tpq
        right = np.clip(np.searchsorted(candidates, times), 0, len(candidates) - 1)
        left = np.clip(right - 1, 0, len(candidates) - 1)
        nearest = np.minimum(np.abs(candidates[right] - times), np.abs(candidates[left] - times))
        worst = max(worst, float(nearest.max()))
    return worst


def roundtrip_file(tok: MMMLoop, score: Score, loops=None) -> list[dict]:
    """Encode each track, turn it into ids, decode it, compare with the raw track.

    :param tok: the tokenizer.
    :param score: the raw tick-time score.
    :param loops: optional loops per raw track (see :meth:`MMMLoop.prepare`).
    :return: one dict per encoded track: ``track_idx, nomml_before, nomml_after,
        notes_before, notes_after, max_onset_error_ticks`` (raw ticks), ``num_errors``.
    """
    rows = []
    raw_tpq = score.ticks_per_quarter
    for encoded in tok.encode_score(score, loops):
        result = tok.decode_ids(tok.tokens_to_ids(encoded.tokens()))
        raw_track = score.tracks[encoded.track_idx]
        decoded = result.score.tracks[0] if len(result.score.tracks) else None
        out_tpq = result.score.ticks_per_quarter
        rows.append(roundtrip_row(encoded.track_idx, raw_track, raw_tpq, decoded, out_tpq, result.num_errors))
    return rows


def roundtrip_row(track_idx: int, raw_track, raw_tpq: int, decoded_track, decoded_tpq: int, num_errors: int) -> dict:
    """One round-trip row: a raw track against its decoding (None when it decoded to nothing).

    :return: ``track_idx, nomml_before, nomml_after, notes_before, notes_after,
        max_onset_error_ticks`` (raw ticks), ``num_errors``.
    """
    decoded = decoded_track
    return {
        "track_idx": int(track_idx),
        "nomml_before": track_nomml(raw_track, raw_tpq),
        "nomml_after": track_nomml(decoded, decoded_tpq) if decoded is not None else None,
        "notes_before": len(raw_track.notes),
        "notes_after": len(decoded.notes) if decoded is not None else 0,
        "max_onset_error_ticks": round(max_onset_error(raw_track, raw_tpq, decoded, decoded_tpq), 4)
        if decoded is not None and len(decoded.notes) else None,
        "num_errors": num_errors,
    }
