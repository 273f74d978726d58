"""Figures and tables of the Concepts pages, computed from the package at build time.

- :func:`write_nomml_figure`: the 13 NOMML levels as grids over two beats, coloured with
  :func:`mmmlib.data.nomml.onset_levels` itself;
- ``nomml-levels``: the table of levels, grids and periods (same source);
- ``encoded-bar``: a tiny bass loop built with symusic, its loops found by
  :func:`mmmlib.data.loops.detect_loops`, encoded by :func:`mmmlib.tokens.build_tokenizer`;
  every token of its header and first bar is listed with what it says. A token family
  without an annotation below is a build warning (an error under ``-W``), so the page
  follows the tokenizer.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from mmmdocs.notebooks import table, write_if_changed
from mmmlib.data.nomml import EXPRESSIVE_LEVEL, MAX_DEPTH, NUM_LEVELS, onset_levels

logger = logging.getLogger(__name__)

# Ticks per beat at which every NOMML grid is a whole number of ticks (1/32 and 1/48 beat).
GRID_TPQ = 3 * 2 ** (MAX_DEPTH - 1)
WINDOW_BEATS = 2


# --------------------------------------------------------------------------- NOMML
def level_grid(level: int) -> tuple[Fraction, str] | None:
    """Period in beats and note name of the grid of a level (None for the expressive level)."""
    if level >= EXPRESSIVE_LEVEL:
        return None
    depth, ternary = divmod(level, 2)
    note = f"1/{4 * 2 ** depth}"
    if ternary:
        return Fraction(2, 3 * 2 ** depth), f"{note}-note triplets"
    return Fraction(1, 2 ** depth), f"{note} notes"


def on_grid(ticks: np.ndarray, level: int, tpq: int) -> np.ndarray:
    """Whether each tick lies on the grid of ``level`` (the integer tests of :mod:`mmmlib.data.nomml`)."""
    depth, ternary = divmod(level, 2)
    if ternary:
        return (ticks * 3 * 2 ** depth) % (2 * tpq) == 0
    return (ticks * 2 ** depth) % tpq == 0


def _expressive_onsets(seed: int = 0, count: int = 9) -> np.ndarray:
    """A few onsets (in beats) that are off every grid: level 12."""
    fine_tpq = GRID_TPQ * 10
    ticks = np.random.default_rng(seed).integers(0, WINDOW_BEATS * fine_tpq, 200)
    off = ticks[onset_levels(ticks, fine_tpq) == EXPRESSIVE_LEVEL][:count]
    return np.sort(off) / fine_tpq


def write_nomml_figure(path: Path) -> Path:
    """Draw the 13 levels: grey ticks for each level's grid, a dot where an onset gets that level.

    :param path: the PNG to write (rewritten only when its bytes change).
    :return: ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ticks = np.arange(WINDOW_BEATS * GRID_TPQ + 1)
    levels = onset_levels(ticks, GRID_TPQ)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, NUM_LEVELS))
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=110)
    for level in range(NUM_LEVELS):
        y = NUM_LEVELS - 1 - level
        ax.axhline(y, color="0.92", lw=0.8, zorder=0)
        if level == EXPRESSIVE_LEVEL:
            ax.scatter(_expressive_onsets(), np.full(9, y), s=22, color=colors[level], marker="D", zorder=3)
            continue
        grid = ticks[on_grid(ticks, level, GRID_TPQ)] / GRID_TPQ
        ax.scatter(grid, np.full(len(grid), y), s=60, marker="|", color="0.55", lw=1, zorder=2)
        mine = ticks[levels == level] / GRID_TPQ
        ax.scatter(mine, np.full(len(mine), y), s=26, color=colors[level], zorder=3)
    labels = []
    for level in range(NUM_LEVELS):
        grid = level_grid(level)
        labels.append(f"{level}: off every grid" if grid is None else f"{level}: every {grid[0]} beat")
    ax.set_yticks(range(NUM_LEVELS - 1, -1, -1), labels)
    ax.set_xticks(np.arange(0, WINDOW_BEATS + 0.25, 0.25))
    ax.set_xlim(-0.04, WINDOW_BEATS + 0.04)
    ax.set_xlabel("onset position (beats, i.e. quarter notes)")
    ax.set_title("NOMML: the grid of each level (grey) and the onsets that get that level (dots)", fontsize=10)
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    write_if_changed(path, buffer.getvalue())
    return path


class NOMMLLevels(SphinxDirective):
    """``nomml-levels``: one row per level: its grid and the grid's period."""

    def run(self) -> list[nodes.Node]:
        rows = []
        for level in range(NUM_LEVELS):
            grid = level_grid(level)
            if grid is None:
                rows.append([str(level), "none: off every grid above (expressive, performed)", "-"])
            else:
                rows.append([str(level), grid[1], f"{grid[0]} beat"])
        return [table(["level", "grid", "period"], rows, [10, 60, 20])]


# --------------------------------------------------------------------------- tokens
def _beats(value: str) -> str:
    beats, pos, res = (int(v) for v in value.split("."))
    return f"{Fraction(beats) + Fraction(pos, res)} beat(s)"


def annotations(positions_per_beat: int, microtiming_resolution: int) -> list[tuple[str, Callable[[str, str], str]]]:
    """``(prefix, meaning)`` per token family, ``meaning(suffix, value)`` with ``suffix`` the rest of the
    family's name after the prefix (``Whole`` in ``ACTrackNoteDurationWhole_1``); the first match wins."""
    def occurs(scope: str) -> Callable[[str, str], str]:
        # MidiTok spells the eighth "Eight" in these token names
        return lambda s, v: (f"{scope} control: { {'eight': 'eighth'}.get(s.lower(), s.lower())} notes "
                             f"{'occur' if v == '1' else 'do not occur'}")

    return [
        ("Track_Start", lambda s, v: "a track begins (MMM: the tracks of a piece follow one another)"),
        ("Program", lambda s, v: "drums" if v == "-1" else f"GM program {v} of the track"),
        ("ACTrackOnsetPolyphonyMin", lambda s, v: f"track control: at least {v} note(s) start together"),
        ("ACTrackOnsetPolyphonyMax", lambda s, v: f"track control: at most {v} note(s) start together"),
        ("ACTrackNoteDensityMin", lambda s, v: f"track control: at least {v} notes in every bar"),
        ("ACTrackNoteDensityMax", lambda s, v: f"track control: at most {v} notes in a bar"),
        ("ACTrackNoteDuration", occurs("track")),
        ("ACTrackRepetition", lambda s, v: f"track control: similarity of consecutive bars ({v})"),
        ("ACTrackNOMML", lambda s, v: f"NOMML control: level {v}"),
        ("ACTrackLoopCount", lambda s, v: f"loop control: {v} loop(s) found in the track"),
        ("ACTrackLoopDuration", lambda s, v: f"loop control: the track's loops last {v} beats"),
        ("Bar_None", lambda s, v: "bar line: a bar begins"),
        ("TimeSig", lambda s, v: f"time signature {v}"),
        ("ACBarOnsetPolyphonyMin", lambda s, v: f"bar control: at least {v} note(s) start together"),
        ("ACBarOnsetPolyphonyMax", lambda s, v: f"bar control: at most {v} note(s) start together"),
        ("ACBarPitchClass", lambda s, v: f"bar control: pitch class {v} occurs (0 = C)"),
        ("ACBarNoteDensity", lambda s, v: f"bar control: {v} notes in the bar"),
        ("ACBarNoteDuration", occurs("bar")),
        ("Position", lambda s, v: f"onset at beat {Fraction(int(v), positions_per_beat)} of the bar "
                                  f"({positions_per_beat} positions per beat)"),
        ("Tempo", lambda s, v: f"tempo {v} quarter notes per minute (the nearest tempo bin)"),
        ("PitchDrum", lambda s, v: f"drum note {v}"),
        ("Pitch", lambda s, v: f"MIDI pitch {v}"),
        ("Velocity", lambda s, v: f"velocity {v}"),
        ("Duration", lambda s, v: f"lasts {_beats(v)} (beats.positions.resolution)"),
        ("MicroTiming", lambda s, v: f"the onset is {v} ticks of 1/{microtiming_resolution} beat later than its "
                                     "position (negative: earlier); expressive mode only"),
        ("Track_End", lambda s, v: "the track ends"),
    ]


def annotate(token: str, table_: list[tuple[str, Callable[[str, str], str]]]) -> str | None:
    """What a token says, or None when no annotation matches its family."""
    kind, _, value = token.partition("_")
    for prefix, meaning in table_:
        if token == prefix or kind == prefix or (prefix.startswith("AC") and kind.startswith(prefix)):
            return meaning(kind[len(prefix):], value)
    return None


def tiny_score():
    """Four repeats of a two-bar bass pattern in 4/4 at 120 BPM; one onset 9 ticks late (microtiming)."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    tpq = 480
    score = Score(tpq)
    score.time_signatures.append(TimeSignature(0, 4, 4))
    score.tempos.append(Tempo(0, 120))
    track = Track(name="bass", program=33, is_drum=False)
    # (beat, pitch, duration in beats, ticks late)
    pattern = [(0, 36, 1, 0), (1.5, 43, 0.5, 9), (2, 48, 1, 0), (3, 43, 1, 0),
               (4, 36, 1, 0), (5, 39, 1, 0), (6, 41, 0.5, 0), (6.5, 43, 1.5, 0)]
    for repeat in range(4):
        for beat, pitch, duration, late in pattern:
            start = int((repeat * 8 + beat) * tpq) + late
            track.notes.append(Note(start, int(duration * tpq), pitch, 96))
    score.tracks.append(track)
    return score


class EncodedBar(SphinxDirective):
    """``encoded-bar``: the header and first bar of :func:`tiny_score`, one annotated row per token."""

    def run(self) -> list[nodes.Node]:
        from mmmlib.data.loops import detect_loops
        from mmmlib.tokens import build_tokenizer
        from mmmlib.tokens.tokenizer import POSITIONS_PER_BEAT

        score = tiny_score()
        loops = {0: [(lp.start_tick, lp.end_tick, lp.duration_beats) for lp in detect_loops(score)]}
        tok = build_tokenizer()
        track = tok.encode_score(score, loops=loops)[0]
        meanings = annotations(POSITIONS_PER_BEAT, tok.microtiming_resolution)
        out: list[nodes.Node] = []
        for title, tokens in (("Track header", track.header), ("First bar", track.bars[0])):
            rows = []
            for token in tokens:
                meaning = annotate(token, meanings)
                if meaning is None:
                    logger.warning("encoded-bar: no annotation for token %r (add its family to annotations())",
                                   token, location=self.get_location())
                    meaning = ""
                literal = nodes.paragraph()
                literal += nodes.literal(text=token)
                rows.append([literal, str(tok.vocab[token]), meaning])
            out.append(nodes.rubric(text=f"{title}: {len(tokens)} tokens"))
            out.append(table(["token", "id", "what it says"], rows, [34, 6, 60], ["mmm-tokens"]))
        return out


def setup(app: Sphinx) -> None:
    app.add_directive("nomml-levels", NOMMLLevels)
    app.add_directive("encoded-bar", EncodedBar)
