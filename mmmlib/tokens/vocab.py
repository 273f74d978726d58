"""Vocabulary tables, token grammar and prompts: what generation needs from the tokenizer.

A token's *family* is its type (``Pitch``, ``Position``, ``ACTrackNOMML``...) except for
special tokens, whose family is the whole token (``Track_Start``, ``FillBar_End``...),
since ``Track_Start`` and ``Track_End`` may not follow the same tokens.

- :func:`grammar_rules`: which family may follow which (MMM track layout, REMI inside bars,
  controls where the encoder puts them, infill markup). Constrained decoding masks the
  ids whose first base token's family cannot follow the last family so far.
- :func:`vocab_table`: one row per id with its base tokens (BPE merges have several),
  first/last family, and whether it is a control or the infill placeholder.
- :func:`special_ids`, :func:`control_ids`, :func:`loss_mask_lookup`.
- :func:`track_prompt_ids`: ``Track_Start Program_P <controls>`` for "a new track".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from miditok.attribute_controls import BarAttributeControl

from mmmlib.core.errors import ConfigError
from mmmlib.tokens.microtiming import MICROTIMING_TYPE
from mmmlib.tokens.special import BAR, FILL_END, FILL_START, INFILL_BAR, TRACK_END, TRACK_START

if TYPE_CHECKING:
    from mmmlib.tokens.tokenizer import MMMLoop

STRUCTURE_TOKENS = (TRACK_START, TRACK_END, BAR, INFILL_BAR, FILL_START, FILL_END, "PAD_None", "BOS_None", "EOS_None")


def token_family(token: str, specials: frozenset[str] | set[str]) -> str:
    """Family of a token: the token itself for special tokens, else its type."""
    return token if token in specials else token.split("_", 1)[0]


def control_types(tok: MMMLoop) -> tuple[list[str], list[str]]:
    """Token types of the track-level and of the bar-level controls, in vocabulary order."""
    track, bar = [], []
    for control in tok.attribute_controls:
        target = bar if isinstance(control, BarAttributeControl) else track
        for token in control.tokens:
            kind = token.split("_", 1)[0]
            if kind not in target:
                target.append(kind)
    return track, bar


def grammar_rules(tok: MMMLoop) -> dict[str, frozenset[str]]:
    """Allowed successions of families (see module doc), cached on the tokenizer."""
    cached = getattr(tok, "_mmmlib_grammar", None)
    if cached is not None:
        return cached
    specials = {t.split("_", 1)[0] for t in tok.special_tokens}
    g = {k: {s for s in v if s not in specials and s != "Program"}
         for k, v in tok.base_tokenizer.tokens_types_graph.items() if k not in specials}
    track_acs, bar_acs = control_types(tok)
    g["Program"] = {*track_acs, "Bar", INFILL_BAR}
    for kind in track_acs:
        g[kind] = {*track_acs, "Bar", INFILL_BAR}
    g["TimeSig"] |= set(bar_acs)  # bar controls sit right after Bar (and TimeSig)
    for kind in bar_acs:
        g[kind] = {*bar_acs, "Position", "Bar"}
    if tok.is_expressive:
        g[MICROTIMING_TYPE] = set(g["Duration"])
        g["Duration"].add(MICROTIMING_TYPE)
    for kind in [k for k, v in g.items() if "Bar" in v]:  # where a bar may end, a track or fill may too
        g[kind] |= {TRACK_END, FILL_END, INFILL_BAR}
    g[TRACK_START] = {"Program"}
    g[INFILL_BAR] = {INFILL_BAR, "Bar", TRACK_END}
    g[TRACK_END] = {TRACK_START, FILL_START, "EOS_None", "PAD_None"}
    g[FILL_START] = {"TimeSig", FILL_END} if tok.config.use_time_signatures else {"Position", FILL_END}
    g[FILL_END] = {FILL_START, "EOS_None", "PAD_None"}
    g["BOS_None"] = {TRACK_START}
    g["EOS_None"] = {"PAD_None"}
    g["PAD_None"] = {"PAD_None"}
    frozen = {k: frozenset(v) for k, v in g.items()}
    tok._mmmlib_grammar = frozen
    return frozen


def families(tok: MMMLoop) -> dict[str, str]:
    """Family of every base token (:func:`token_family`), cached on the tokenizer."""
    cached = getattr(tok, "_mmmlib_families", None)
    if cached is None or len(cached) != len(tok.vocab):
        specials = frozenset(tok.special_tokens)
        cached = {t: token_family(t, specials) for t in tok.vocab}
        tok._mmmlib_families = cached
    return cached


def allowed_pairs(tok: MMMLoop) -> frozenset[tuple[str, str]]:
    """The grammar as a set of ``(family, next family)`` pairs, cached on the tokenizer."""
    cached = getattr(tok, "_mmmlib_pairs", None)
    if cached is None:
        cached = frozenset((a, b) for a, nexts in grammar_rules(tok).items() for b in nexts)
        tok._mmmlib_pairs = cached
    return cached


def count_grammar_errors(tok: MMMLoop, tokens: Sequence[str]) -> int:
    """Number of successions in ``tokens`` that :func:`grammar_rules` does not allow."""
    family, pairs = families(tok), allowed_pairs(tok)
    fams = [family.get(t, t) for t in tokens]
    return sum(1 for pair in zip(fams[:-1], fams[1:], strict=False) if pair not in pairs)


def vocab_table(tok: MMMLoop) -> pd.DataFrame:
    """One row per id: ``id, tokens, num_tokens, family, first_family, last_family,
    is_control, is_placeholder`` (``family`` is ``"BPE"`` for merges)."""
    specials = frozenset(tok.special_tokens)
    rows = []
    for i, tokens in enumerate(tok.id_tokens()):
        first, last = token_family(tokens[0], specials), token_family(tokens[-1], specials)
        rows.append({
            "id": i, "tokens": " ".join(tokens), "num_tokens": len(tokens),
            "family": first if len(tokens) == 1 else "BPE",
            "first_family": first, "last_family": last,
            "is_control": len(tokens) == 1 and first.startswith("AC"),
            "is_placeholder": tokens == (INFILL_BAR,),
        })
    return pd.DataFrame(rows)


def loss_mask_lookup(tok: MMMLoop) -> np.ndarray:
    """int8 array over ids: 0 for controls and the infill placeholder, 1 for every other id."""
    cached = getattr(tok, "_mmmlib_loss_lookup", None)
    if cached is not None and len(cached) == len(tok):
        return cached
    lookup = np.ones(len(tok), dtype=np.int8)
    for i, tokens in enumerate(tok.id_tokens()):
        if len(tokens) == 1 and (tokens[0].startswith("AC") or tokens[0] == INFILL_BAR):
            lookup[i] = 0
    tok._mmmlib_loss_lookup = lookup
    return lookup


def special_ids(tok: MMMLoop) -> dict[str, int]:
    """Ids of the structure tokens: ``Track_Start``, ``Track_End``, ``Bar_None``,
    ``Infill_Bar``, ``FillBar_Start``, ``FillBar_End``, ``PAD_None``, ``BOS_None``, ``EOS_None``."""
    return {t: tok.vocab[t] for t in STRUCTURE_TOKENS if t in tok.vocab}


def control_ids(tok: MMMLoop) -> dict[str, dict[str, int]]:
    """Ids of every control token: ``{type: {value: id}}`` (e.g. ``["ACTrackNOMML"]["12"]``)."""
    out: dict[str, dict[str, int]] = {}
    for control in tok.attribute_controls:
        for token in control.tokens:
            kind, value = token.split("_", 1)
            out.setdefault(kind, {})[value] = tok.vocab[token]
    return out


def program_ids(tok: MMMLoop) -> dict[int, int]:
    """Id of each ``Program_p`` token (``-1`` is drums)."""
    return {int(t.split("_")[1]): i for t, i in tok.vocab.items() if t.startswith("Program_")}


def track_prompt_tokens(tok: MMMLoop, program: int, controls: Mapping[str, Any] | None = None) -> list[str]:
    """``Track_Start Program_P`` and the given track controls, in the order the encoder writes them.

    :param tok: the tokenizer.
    :param program: GM program, ``-1`` for drums.
    :param controls: ``{control type: value}``, e.g. ``{"ACTrackNOMML": 12,
        "ACTrackLoopCount": 2, "ACTrackLoopDuration": "6-8"}``; a type may be given
        without its ``ACTrack`` prefix (``{"NOMML": 12}``). Controls left out are absent
        from the prompt, as in training samples that drop them.
    :return: base tokens.
    :raises ConfigError: for an unknown control, control value or program (a ``ValueError``).
    """
    wanted = {}
    for kind, value in (controls or {}).items():
        full = kind if kind.startswith("AC") else f"ACTrack{kind}"
        token = f"{full}_{value}"
        if token not in tok.vocab:
            raise ConfigError("controls", f"has an unknown control or value: no token {token!r} in the vocabulary")
        wanted[full] = token
    track_types, _ = control_types(tok)
    unknown = set(wanted) - set(track_types)
    if unknown:
        raise ConfigError("controls", f"are not track-level controls of this tokenizer: {sorted(unknown)}")
    program_token = f"Program_{program}"
    if program_token not in tok.vocab:
        raise ConfigError("program", f"must be a GM program 0-127 or -1 (drums), got {program}")
    return [TRACK_START, program_token, *(wanted[t] for t in track_types if t in wanted)]


def track_prompt_ids(tok: MMMLoop, program: int, controls: Mapping[str, Any] | None = None) -> list[int]:
    """Ids of :func:`track_prompt_tokens` (single-token ids: these tokens never merge)."""
    return tok.tokens_to_ids(track_prompt_tokens(tok, program, controls))
