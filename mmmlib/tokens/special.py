"""Names of the tokens the MMM layout is built from, and which token types BPE may merge.

They live here, below :mod:`mmmlib.tokens.tokenizer`, so that the encoder, the decoder and
the vocabulary tables can use them without importing the tokenizer (which imports them).
"""

from __future__ import annotations

from mmmlib.tokens.microtiming import MICROTIMING_TYPE

TRACK_START, TRACK_END, BAR = "Track_Start", "Track_End", "Bar_None"
INFILL_BAR, FILL_START, FILL_END = "Infill_Bar", "FillBar_Start", "FillBar_End"
INFILL_TOKENS = (INFILL_BAR, FILL_START, FILL_END)
# Token types BPE may merge (notes and time inside a bar); every other token stays one id.
MERGEABLE_TYPES = frozenset({"Position", "Pitch", "PitchDrum", "Velocity", "Duration", MICROTIMING_TYPE, "Tempo"})
