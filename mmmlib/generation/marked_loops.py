"""Loops the model marks itself (``Loop_Start`` ... ``Loop_End``, published dialect): files and checks.

A model trained on MIDI-GPT-Loop's data learned to mark the loops the GigaMIDI detector found
in its training files. For each loop a generation marks, 04:

- writes the span as its own MIDI file (the marked track's notes from the loop's start to its
  end, moved to tick 0, notes cut at the end; the generation's tempo and time signature), so
  it can be listened to and reused as a loop;
- asks the loop detector (:func:`mmmlib.data.loops.detect_loops`) whether it finds that span
  as a loop of the track it was generated in (same start and end, within one ``Position``
  step): that is, whether the content marked as a loop really repeats as the detector requires.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from symusic import Note, Score, Tempo, TimeSignature, Track

from mmmlib.core.midi import write_midi_atomic

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mmmlib.data.loops import Loop
    from mmmlib.generation.language import MarkedLoop

POSITIONS_PER_QUARTER = 12  # tolerance of the detector check: one Position step


def loop_score(score: Score, loop: MarkedLoop) -> Score:
    """The span of one marked loop as a score of its own (see the module doc).

    :param score: the generation.
    :param loop: a loop it marks.
    :return: a one-track score starting at tick 0.
    """
    out = Score(score.ticks_per_quarter)
    source = score.tracks[loop.track_idx]
    track = Track(name=source.name, program=source.program, is_drum=source.is_drum)
    notes = [Note(n.time - loop.start_tick, min(n.duration, loop.end_tick - n.time), n.pitch, n.velocity)
             for n in source.notes if loop.start_tick <= n.time < loop.end_tick]
    track.notes.extend(notes)
    out.tracks.append(track)
    out.tempos.append(Tempo(0, float(score.tempos[0].qpm) if len(score.tempos) else 120.0))
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        out.time_signatures.append(TimeSignature(0, ts.numerator, ts.denominator))
    return out


def write_loop_files(score: Score, loops: Sequence[MarkedLoop], folder: Path, stem: str) -> list[str]:
    """Write each marked loop as ``folder/loops/{stem}_t{track}_{k}.mid``.

    :param score: the generation.
    :param loops: the loops it marks.
    :param folder: the run's label folder (paths are returned relative to it).
    :param stem: the generation's file stem, e.g. ``nomml03_00001_a0``.
    :return: one relative path per loop, in order.
    """
    paths = []
    if loops:
        (folder / "MIDI" / "loops").mkdir(parents=True, exist_ok=True)
    for k, loop in enumerate(loops):
        relative = f"MIDI/loops/{stem}_t{loop.track_idx}_{k}.mid"
        write_midi_atomic(loop_score(score, loop), folder / relative)
        paths.append(relative)
    return paths


def is_repeating(loop: MarkedLoop, detected: Sequence[Loop], ticks_per_quarter: int) -> bool:
    """Whether the detector found the marked span as a loop of its track.

    :param loop: a marked loop.
    :param detected: the detector's loops of the generation.
    :param ticks_per_quarter: the generation's resolution.
    :return: True when a detected loop of the same track has the same start and end, within
        one ``Position`` step.
    """
    tolerance = max(1, ticks_per_quarter // POSITIONS_PER_QUARTER)
    return any(d.track_idx == loop.track_idx and abs(d.start_tick - loop.start_tick) <= tolerance
               and abs(d.end_tick - loop.end_tick) <= tolerance for d in detected)
