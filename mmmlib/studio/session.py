"""What the studio does with a model: describe a loop, generate variations, measure them, edit a file.

Everything goes through the generation stage's public requests
(:class:`~mmmlib.generation.LoopRequest`, :class:`~mmmlib.generation.PieceRequest`) and
:func:`~mmmlib.generation.generate_batch`, so the studio hears exactly what 04 would write.
Controls are asked by meaning (NOMML level, loop count, loop length) and written in the
model's own token language (:meth:`~mmmlib.generation.language.base.Language.control_values`),
so the same parameters drive a model trained here and the published MIDI-GPT-Loop model.
Measurement uses the same detectors as 04/05: :func:`~mmmlib.data.nomml.track_nomml` and
:func:`~mmmlib.data.loops.detect_loops`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from symusic import Score

from mmmlib.core.midi import write_midi_atomic
from mmmlib.data.loops import detect_loops
from mmmlib.data.nomml import track_nomml
from mmmlib.generation import (
    BarInfill,
    Generation,
    LoopRequest,
    PieceRequest,
    Sampling,
    TrackSpec,
    derive_seed,
    generate_batch,
)
from mmmlib.generation.language import language_of
from mmmlib.generation.sweep import beats_per_bar

LOOP_COUNT_TOP = 5  # loop count requests run 0..5, where 5 means "5 or more"

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from mmmlib.studio.params import StudioParams


def track_spec(track: Mapping[str, Any], time_signature: str, tok) -> TrackSpec:
    """A :class:`TrackSpec` from one entry of the ``tracks`` parameter, in ``tok``'s language.

    :param track: ``{"program": 33, "nomml": 2, "loop_count": 1, "loop_duration_bars": 2,
        "controls": {...}}``; every key but ``program`` is optional (left out: no control).
    :param time_signature: the loop's time signature (for the loop length in beats).
    :param tok: the model's tokenizer (either dialect).
    :return: the track to generate.
    :raises ConfigError: when the tokenizer lacks a requested control.
    """
    controls: dict[str, Any] = dict(track.get("controls", {}))
    bars = track.get("loop_duration_bars")
    controls.update(language_of(tok).control_values(
        nomml=track.get("nomml"), loop_count=track.get("loop_count"),
        loop_duration_beats=None if bars is None else bars * beats_per_bar(time_signature)))
    return TrackSpec(int(track["program"]), controls)


def loop_requests(p: StudioParams, tok) -> list[LoopRequest]:
    """``num_variations`` requests of the described loop, one seed each (the same seed, the same loop)."""
    tracks = tuple(track_spec(t, p.time_signature, tok) for t in p.tracks)
    return [LoopRequest(tracks, p.num_bars, p.time_signature or None, p.tempo or None,
                        derive_seed(p.seed, i), p.max_tokens_per_bar) for i in range(p.num_variations)]


def request_table(request: LoopRequest) -> pd.DataFrame:
    """One row per track of a request: its program and every control it asks for (empty: not asked)."""
    rows = [{"track": i, "program": spec.program, **{str(k): v for k, v in spec.controls.items()}}
            for i, spec in enumerate(request.tracks)]
    return pd.DataFrame(rows).fillna("")


def sampling_of(p: StudioParams) -> Sampling:
    """The sampling settings of the studio parameters."""
    return Sampling(p.temperature, p.top_k, p.top_p, p.repetition_penalty)


def variations(model: PreTrainedModel, tok, p: StudioParams) -> list[Generation]:
    """Generate the described loop ``num_variations`` times, in one batched call."""
    requests = loop_requests(p, tok)
    return generate_batch(model, tok, requests, sampling_of(p), batch_size=len(requests))


def measured_tracks(score: Score) -> pd.DataFrame:
    """Per track of ``score``: program, notes, NOMML, loops found and their median length in beats."""
    loops = detect_loops(score) if len(score.tracks) else []
    rows = []
    for i, track in enumerate(score.tracks):
        beats = [lp.duration_beats for lp in loops if lp.track_idx == i]
        rows.append({
            "track": i, "program": -1 if track.is_drum else int(track.program), "notes": len(track.notes),
            "nomml": track_nomml(track, score.ticks_per_quarter) if len(track.notes) else None,
            "loops": len(beats), "loop_beats": float(np.median(beats)) if beats else None,
        })
    return pd.DataFrame(rows, columns=["track", "program", "notes", "nomml", "loops", "loop_beats"])


def control_table(tracks: Sequence[Mapping[str, Any]], generations: Sequence[Generation],
                  time_signature: str) -> pd.DataFrame:
    """Requested vs measured controls, one row per track of each variation.

    :param tracks: the ``tracks`` parameter (what each track asked for, by meaning).
    :param generations: the variations.
    :param time_signature: the loop's time signature (loop lengths in beats).
    :return: requested and measured NOMML, loop count (5 means 5 or more) and loop length in
        beats (the median of the detected loops); ``nomml_ok`` / ``loops_ok`` say whether they
        match (empty when nothing was requested).
    """
    rows = []
    for v, gen in enumerate(generations):
        measured = measured_tracks(gen.score).set_index("track")
        for i, want in enumerate(tracks):
            got = measured.loc[i] if i in measured.index else None
            want_nomml, want_count = want.get("nomml"), want.get("loop_count")
            got_count = None if got is None else min(int(got["loops"]), LOOP_COUNT_TOP)
            bars = want.get("loop_duration_bars")
            rows.append({
                "variation": v, "track": i, "program": int(want["program"]),
                "nomml_requested": want_nomml, "nomml_measured": None if got is None else got["nomml"],
                "nomml_ok": None if want_nomml is None else (got is not None and got["nomml"] == want_nomml),
                "loop_count_requested": want_count, "loop_count_measured": got_count,
                "loops_ok": None if want_count is None else got_count == want_count,
                "loop_beats_requested": None if bars is None else bars * beats_per_bar(time_signature),
                "loop_beats_measured": None if got is None else got["loop_beats"],
                "bars": gen.bars_per_track[i] if i < len(gen.bars_per_track) else None,
                "notes": 0 if got is None else int(got["notes"]),
            })
    table = pd.DataFrame(rows)
    # levels and counts are integers with gaps (not requested, empty track): nullable ints, not floats
    return table.astype({"nomml_requested": "Int64", "nomml_measured": "Int64", "loop_count_requested": "Int64",
                         "loop_count_measured": "Int64", "bars": "Int64"})


def edit_request(p: StudioParams, score: Score, tok) -> PieceRequest:
    """The edit of ``midi_file`` the parameters ask for: bar infill, a new track, or both.

    :raises ValueError: a track or bar range the file does not have (before any model work).
    """
    bar_infills = ()
    if p.infill_track >= 0:
        if p.infill_track >= len(score.tracks):
            raise ValueError(f"infill_track: the file has {len(score.tracks)} tracks, got {p.infill_track}")
        bar_infills = (BarInfill(p.infill_track, p.infill_bars[0], p.infill_bars[1]),)
    new_tracks = ()
    if p.new_track_program >= -1:
        new = {"program": p.new_track_program} | ({"nomml": p.new_track_nomml} if p.new_track_nomml >= 0 else {})
        new_tracks = (track_spec(new, p.time_signature, tok),)
    return PieceRequest(bar_infills=bar_infills, new_tracks=new_tracks, context_bars=p.context_bars,
                        seed=derive_seed(p.seed, 1 << 16), max_tokens_per_bar=p.max_tokens_per_bar)


def edit_file(model: PreTrainedModel, tok, score: Score, request: PieceRequest, p: StudioParams) -> Generation:
    """Run one edit of ``score`` (see :func:`edit_request`)."""
    return generate_batch(model, tok, [(score, request)], sampling_of(p), batch_size=1)[0]


def save_midi(score: Score, folder: str | Path, name: str) -> Path:
    """Write ``score`` to ``folder/name.mid`` (atomically) and return the path."""
    path = Path(folder) / f"{name}.mid"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_midi_atomic(score, path)
    return path
