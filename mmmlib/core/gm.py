"""General MIDI program families: the one list every stage and figure uses."""

from __future__ import annotations

import math

# General MIDI program families, 8 programs each (drums are a 17th family).
GM_FAMILIES = ("Piano", "Chrom. perc.", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass",
               "Reed", "Pipe", "Synth lead", "Synth pad", "Synth FX", "Ethnic", "Percussive", "Sound FX")
DRUMS = "Drums"
UNKNOWN = "Unknown"


def program_family(program: float, is_drum: bool) -> str:
    """General MIDI family of a track: ``"Drums"`` for drum tracks, ``"Unknown"`` for a
    missing or out-of-range program (a results row of a failed track, say).

    :param program: GM program 0-127 (a float NaN is accepted: results tables hold them).
    :param is_drum: whether the track is a drum track.
    :return: the family name.
    """
    if bool(is_drum):
        return DRUMS
    if program is None or not math.isfinite(float(program)) or not 0 <= program < 128:
        return UNKNOWN
    return GM_FAMILIES[int(program) // 8]
