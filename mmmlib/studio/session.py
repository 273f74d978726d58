"""What the studio does with a model: describe a loop, generate variations, measure them, edit a file.

Everything goes through the generation stage's public requests
(:class:`~mmmlib.generation.LoopRequest`, :class:`~mmmlib.generation.PieceRequest`) and
:func:`~mmmlib.generation.generate_batch`, so the studio hears exactly what 04 would write.
Measurement uses the same detectors as 04/05: :func:`~mmmlib.data.nomml.track_nomml` and
:func:`~mmmlib.data.loops.detect_loops`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from mmmlib.generation.sweep import beats_per_bar
from mmmlib.tokens.controls import (
    LOOP_COUNT_TYPE,
    LOOP_DURATION_TYPE,
    NOMML_TYPE,
    dominant_loop_duration,
    loop_count_value,
    loop_duration_value,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from mmmlib.studio.params import StudioParams


def track_spec(track: Mapping[str, Any], time_signature: str) -> TrackSpec:
    """A :class:`TrackSpec` from one entry of the ``tracks`` parameter.

    :param track: ``{"program": 33, "nomml": 2, "loop_count": 1, "loop_duration_bars": 2,
        "controls": {...}}``; every key but ``program`` is optional (left out: no control).
    :param time_signature: the loop's time signature (for the loop length in beats).
    :return: the track to generate.
    """
    controls: dict[str, Any] = dict(track.get("controls", {}))
    if "nomml" in track:
        controls[NOMML_TYPE] = int(track["nomml"])
    if "loop_count" in track:
        controls[LOOP_COUNT_TYPE] = loop_count_value(int(track["loop_count"]))
    if "loop_duration_bars" in track:
        controls[LOOP_DURATION_TYPE] = loop_duration_value(track["loop_duration_bars"] * beats_per_bar(time_signature))
    return TrackSpec(int(track["program"]), controls)


def loop_requests(p: StudioParams) -> list[LoopRequest]:
    """``num_variations`` requests of the described loop, one seed each (the same seed, the same loop)."""
    tracks = tuple(track_spec(t, p.time_signature) for t in p.tracks)
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
    requests = loop_requests(p)
    return generate_batch(model, tok, requests, sampling_of(p), batch_size=len(requests))


def measured_tracks(score: Score) -> pd.DataFrame:
    """Per track of ``score``: program, notes, NOMML, loops found and their dominant duration bin."""
    loops = detect_loops(score) if len(score.tracks) else []
    rows = []
    for i, track in enumerate(score.tracks):
        mine = [lp for lp in loops if lp.track_idx == i]
        rows.append({
            "track": i, "program": -1 if track.is_drum else int(track.program), "notes": len(track.notes),
            "nomml": track_nomml(track, score.ticks_per_quarter) if len(track.notes) else None,
            "loops": len(mine),
            "loop_duration": dominant_loop_duration([lp.duration_beats for lp in mine]),
        })
    return pd.DataFrame(rows, columns=["track", "program", "notes", "nomml", "loops", "loop_duration"])


def control_table(requests: Sequence[LoopRequest], generations: Sequence[Generation]) -> pd.DataFrame:
    """Requested vs measured controls, one row per track of each variation.

    Requested values that were left out show as empty; ``nomml_ok`` and ``loops_ok`` say
    whether the measured value matches (empty when nothing was requested).
    """
    rows = []
    for v, (request, gen) in enumerate(zip(requests, generations, strict=True)):
        measured = measured_tracks(gen.score).set_index("track")
        for i, spec in enumerate(request.tracks):
            got = measured.loc[i] if i in measured.index else None
            want_nomml = spec.controls.get(NOMML_TYPE)
            want_count = spec.controls.get(LOOP_COUNT_TYPE)
            got_count = loop_count_value(int(got["loops"])) if got is not None else None
            rows.append({
                "variation": v, "track": i, "program": spec.program,
                "nomml_requested": want_nomml, "nomml_measured": None if got is None else got["nomml"],
                "nomml_ok": None if want_nomml is None else (got is not None and got["nomml"] == want_nomml),
                "loop_count_requested": want_count, "loop_count_measured": got_count,
                "loops_ok": None if want_count is None else got_count == want_count,
                "loop_duration_requested": spec.controls.get(LOOP_DURATION_TYPE),
                "loop_duration_measured": None if got is None else got["loop_duration"],
                "bars": gen.bars_per_track[i] if i < len(gen.bars_per_track) else None,
                "notes": 0 if got is None else int(got["notes"]),
            })
    table = pd.DataFrame(rows)
    # levels are integers with gaps (not requested, empty track): nullable ints, not floats
    return table.astype({"nomml_requested": "Int64", "nomml_measured": "Int64", "bars": "Int64"})


def edit_request(p: StudioParams, score: Score) -> PieceRequest:
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
        new_tracks = (track_spec(new, p.time_signature),)
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
