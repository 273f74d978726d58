"""Token languages: the interface generation talks to, and one implementation per dialect.

- :mod:`~mmmlib.generation.language.base`: :class:`Language`, the interface;
- :mod:`~mmmlib.generation.language.mmm`: mmmlib's own dialect (:class:`MMMLoopLanguage`);
- :mod:`~mmmlib.generation.language.published`: the published MIDI-GPT-Loop dialect
  (:class:`PublishedLanguage`).

:func:`language_of` wraps a tokenizer of either dialect (once: the wrapper caches the grammar
tables); :func:`load_language` reads a tokenizer file of either dialect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmmlib.generation.language.base import Decoded, FillSegment, Language, MarkedLoop, PieceTrackTokens
from mmmlib.generation.language.mmm import MMMLoopLanguage
from mmmlib.generation.language.published import PublishedLanguage


def language_of(tok: Any) -> Language:
    """The :class:`Language` of a tokenizer (a language is returned as it is).

    :param tok: an :class:`~mmmlib.tokens.tokenizer.MMMLoop`, a
        :class:`~mmmlib.tokens.published.PublishedTokenizer` or a :class:`Language`.
    :return: the language, created once per tokenizer.
    :raises TypeError: for anything else.
    """
    if isinstance(tok, Language):
        return tok
    cached = tok.__dict__.get("_mmmlib_language")
    if cached is not None:
        return cached
    from mmmlib.tokens.published import PublishedTokenizer
    from mmmlib.tokens.tokenizer import MMMLoop

    if isinstance(tok, PublishedTokenizer):
        lang: Language = PublishedLanguage(tok)
    elif isinstance(tok, MMMLoop):
        lang = MMMLoopLanguage(tok)
    else:
        raise TypeError(f"not a tokenizer mmmlib can generate with: {type(tok).__name__}")
    tok.__dict__["_mmmlib_language"] = lang
    return lang


def load_language(path: str | Path) -> Language:
    """The language of a tokenizer file of either dialect (recognised by its content).

    :param path: an mmmlib ``tokenizer.json`` or the published JSON (or a folder holding one).
    :return: the language.
    """
    from mmmlib.tokens.loading import load_any_tokenizer

    return language_of(load_any_tokenizer(path))


__all__ = ["Decoded", "FillSegment", "Language", "MMMLoopLanguage", "MarkedLoop", "PieceTrackTokens",
           "PublishedLanguage", "language_of", "load_language"]
