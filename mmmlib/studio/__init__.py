"""The studio (notebook 06): load a model, describe a loop, hear variations, edit your own MIDI file.

- :mod:`~mmmlib.studio.params`: :class:`StudioParams`, the notebook's checked parameters;
- :mod:`~mmmlib.studio.session`: requests from the parameters (per-track NOMML and loop
  controls), :func:`variations` in one batched call, :func:`control_table` (requested vs
  measured), :func:`edit_request` / :func:`edit_file` (bar infill, a new track), :func:`save_midi`;
- :mod:`~mmmlib.studio.display`: :func:`piano_rolls` side by side and :func:`audio_player`
  (each loop played twice, so the seam is heard).

The studio sits above every stage: it uses generation to write and the data stage's
detectors and the evaluation's renderer to measure and play.
"""

from mmmlib.studio.display import audio_player, piano_rolls
from mmmlib.studio.params import StudioParams
from mmmlib.studio.session import (
    control_table,
    edit_file,
    edit_request,
    loop_requests,
    measured_tracks,
    request_table,
    save_midi,
    track_spec,
    variations,
)

__all__ = [
    "StudioParams", "audio_player", "control_table", "edit_file", "edit_request", "loop_requests",
    "measured_tracks", "piano_rolls", "request_table", "save_midi", "track_spec", "variations",
]
