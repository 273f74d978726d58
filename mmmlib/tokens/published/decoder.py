"""Base tokens -> ``symusic.Score`` at 1920 ticks per quarter, and the loops marked in them.

The reference decoder (REAPER's ``_tokens_to_score`` after MMM's per-track split), rule by
rule, so generated sequences decode as the published model expects:

- tracks are split at ``Track_Start``; the token before the next ``Track_Start`` (normally
  ``Track_End``) is dropped; with no ``Track_Start`` the whole sequence is one track;
- the first track's first ``TimeSig`` before any note token sets the signature at tick 0;
  the other tracks start from the *last* signature change of the first track, and only the
  first track's tempos and signature changes reach the score;
- ``Bar_None`` advances one bar of the current signature (the first one stays at 0);
  ``Position_p`` goes to ``bar + 160 p`` and resets the direction; ``DeltaDirection_0``
  makes the next ``Delta`` negative; ``Delta_d`` moves the current tick by ``d``;
- a ``Pitch``/``PitchDrum`` makes a note only when the next two tokens are a ``Velocity``
  and a ``Duration`` (``Duration_u`` lasts ``160 u`` ticks); otherwise it is skipped;
- the first ``Program`` names the track (``-1``: drums, program 0), later ones change it;
- ``Loop_Start`` pushes the current tick, ``Loop_End`` pops the last start (nested or
  crossing loops pair last-in first-out); an unmatched marker is dropped;
- tracks without notes are left out of the score, but loops keep the *sequence* index of
  their track, as the reference reports them.

The reference's own decoding of the golden files has one more quirk, kept apart in
:func:`reference_segments`: see there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from symusic import Note, Score, Tempo, TimeSignature, Track

from mmmlib.tokens.published.report import Report
from mmmlib.tokens.published.vocab import DELTA_FACTOR, TPQ

NOTE_TYPES = ("Pitch", "PitchDrum", "Velocity", "Duration", "PitchBend", "Pedal")
GM_DRUMS = "Drums"


@dataclass(frozen=True)
class DecodedLoop:
    """A loop marked in a token sequence: ticks at 1920 per quarter, track = sequence index."""

    start: int
    end: int
    track_idx: int


def split_tracks(tokens: Sequence[str]) -> list[list[str]]:
    """Split a sequence into track segments at ``Track_Start`` (MMM's rule, see the module doc).

    :param tokens: base tokens.
    :return: one token list per track.
    """
    starts = [i for i, tok in enumerate(tokens) if tok == "Track_Start"]
    if not starts:
        return [list(tokens)]
    ends = [s - 1 for s in starts[1:]] + [len(tokens)]
    return [list(tokens[s + 1 : e]) for s, e in zip(starts, ends, strict=True)]


def reference_segments(bpe_ids: Sequence[int], tokens: Sequence[str], track_start_id: int) -> list[list[str]]:
    """The track segments the reference decoded the golden files from.

    The golden ``decoded_*`` entries come from a ``TokSequence`` holding both the base
    tokens and the BPE ids: MMM then finds ``Track_Start`` among the *BPE* ids and slices
    the *base tokens* at those indices, so every track after the first starts in the middle
    of an earlier one. Use :func:`split_tracks` for real decoding; this exists only to
    reproduce the golden files.

    :param bpe_ids: the BPE ids of the sequence.
    :param tokens: its base tokens.
    :param track_start_id: id of ``Track_Start`` (the same as a BPE id and a base id).
    :return: the misaligned segments.
    """
    starts = [i for i, x in enumerate(bpe_ids) if x == track_start_id]
    if not starts:
        return [list(tokens)]
    ends: list[int | None] = [s - 1 for s in starts[1:]] + [None]
    return [list(tokens[s + 1 : e]) for s, e in zip(starts, ends, strict=True)]


def _ticks_per_bar(num: int, den: int) -> int:
    return TPQ * num if den == 4 else int(TPQ * 4 / den) * num


def _first_signature(seq: Sequence[str]) -> tuple[int, int] | None:
    for tok in seq:
        kind, _, value = tok.partition("_")
        if kind == "TimeSig":
            return _parse_signature(value)
        if kind in NOTE_TYPES:
            return None
    return None


def _parse_signature(value: str) -> tuple[int, int] | None:
    try:
        num, den = (int(x) for x in value.split("/"))
    except ValueError:
        return None
    return (num, den) if num > 0 and den > 0 else None


def decode_segments(
    segments: Sequence[Sequence[str]],
    default_tempo: float,
    report: Report | None = None,
    clamp_negative: bool = True,
) -> tuple[Score, list[DecodedLoop]]:
    """Decode track segments (base tokens) into a score and loops, never raising.

    :param segments: one token list per track (see :func:`split_tracks`).
    :param default_tempo: tempo (qpm) put at tick 0 when the first track has none there.
    :param report: malformed tokens are counted here.
    :param clamp_negative: a negative ``Delta`` before the first bar can put a note before
        tick 0; True moves it to 0 (so the score can be written), False keeps it as the
        reference does. Either way it is counted as ``note_before_zero``.
    :return: ``(score, loops)``: the score at 1920 ticks per quarter, the loops in order of
        their ``Loop_End``.
    """
    report = report if report is not None else Report()
    score = Score(TPQ)
    tempos: list[Tempo] = []
    signatures: list[TimeSignature] = []
    loops: list[DecodedLoop] = []
    for si, seq in enumerate(segments):
        if si == 0:
            first = _first_signature(seq)
            signatures.append(TimeSignature(0, *(first or (4, 4))))
        current_sig = (signatures[-1].numerator, signatures[-1].denominator)
        bar_len = _ticks_per_bar(*current_sig)
        tick = bar_tick = 0
        bar = -1
        direction = 1
        starts: list[int] = []
        program, is_drum = 0, False
        for tok in seq:
            kind, _, value = tok.partition("_")
            if kind == "Program":
                program = int(value) if value.lstrip("-").isdigit() else 0
                program, is_drum = (0, True) if program == -1 else (program, False)
                break
        notes: list[Note] = []
        n = len(seq)
        for ti, tok in enumerate(seq):
            kind, _, value = tok.partition("_")
            try:
                if tok == "Bar_None":
                    bar += 1
                    if bar > 0:
                        tick = bar_tick + bar_len
                    bar_tick = tick
                elif kind == "Position":
                    bar = max(bar, 0)
                    tick = bar_tick + int(value) * DELTA_FACTOR
                    direction = 1
                elif kind == "DeltaDirection":
                    direction = -1
                elif kind == "Delta":
                    tick += direction * int(value)
                elif kind in ("Pitch", "PitchDrum"):
                    if ti + 2 >= n:
                        report.add("note_truncated")
                        continue
                    vel_kind, _, vel = seq[ti + 1].partition("_")
                    dur_kind, _, dur = seq[ti + 2].partition("_")
                    if vel_kind == "Velocity" and dur_kind == "Duration":
                        if tick < 0:
                            report.add("note_before_zero")
                        time = max(tick, 0) if clamp_negative else tick
                        notes.append(Note(time, int(dur) * DELTA_FACTOR, int(value), int(vel)))
                    else:
                        report.add("note_incomplete")
                elif kind == "Program":
                    value_int = int(value)
                    program, is_drum = (0, True) if value_int == -1 else (value_int, is_drum)
                elif kind == "Tempo":
                    if si == 0:
                        tempos.append(Tempo(tick, float(value)))
                elif kind == "TimeSig":
                    sig = _parse_signature(value)
                    if sig is None:
                        report.add("time_signature_malformed")
                    elif sig != current_sig:
                        current_sig, bar_len = sig, _ticks_per_bar(*sig)
                        if si == 0:
                            signatures.append(TimeSignature(tick, *sig))
                elif tok == "Loop_Start":
                    starts.append(tick)
                elif tok == "Loop_End":
                    if starts:
                        loops.append(DecodedLoop(starts.pop(), tick, si))
                    else:
                        report.add("loop_end_unmatched")
            except ValueError:
                report.add("token_malformed")
        report.add("loop_start_unmatched", len(starts))
        if notes:
            track = Track(name=GM_DRUMS if is_drum else "", program=program, is_drum=is_drum)
            track.notes.extend(notes)
            score.tracks.append(track)
    if not tempos or tempos[0].time != 0:
        tempos.insert(0, Tempo(0, default_tempo))
    score.tempos.extend(tempos)
    score.time_signatures.extend(signatures)
    return score, loops
