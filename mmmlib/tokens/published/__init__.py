"""The published MIDI-GPT-Loop token language: encode scores into its ids, decode ids back.

``load_published(path)`` reads ``MMM_epl_mistral_tokenizer_with_acs.json`` (the tokenizer
published with the one trained MIDI-GPT-Loop model) and returns a
:class:`~mmmlib.tokens.published.tokenizer.PublishedTokenizer` that reproduces the
reference implementation (a MidiTok fork) id for id. Modules: ``vocab`` (the JSON),
``preprocess`` (REAPER path, 1920 ticks per quarter), ``controls`` (track controls, NOMML,
loops), ``encoder`` (base tokens), ``bpe`` (bar words), ``decoder``, ``tokenizer`` (the
class), ``report`` (problem counts), ``cli`` (``encode`` / ``decode`` commands).
"""

from __future__ import annotations

from mmmlib.tokens.published.decoder import DecodedLoop
from mmmlib.tokens.published.report import Report
from mmmlib.tokens.published.tokenizer import Decoded, Encoding, PublishedTokenizer, load_published

__all__ = ["Decoded", "DecodedLoop", "Encoding", "PublishedTokenizer", "Report", "load_published"]
