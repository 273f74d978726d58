"""How the studio shows loops: piano rolls side by side, and players that play each loop twice."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from symusic import Score

from mmmlib.core.midi import write_midi_atomic
from mmmlib.core.plotting import plot_piano_roll, save_png


def piano_rolls(scores: Sequence[Score], titles: Sequence[str], path: str | Path | None = None,
                columns: int = 4) -> plt.Figure:
    """Piano rolls of ``scores`` side by side (``columns`` per row), saved to ``path`` when given."""
    columns = max(1, min(columns, len(scores)))
    rows = -(-len(scores) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(scores):]:
        ax.set_visible(False)
    for ax, score, title in zip(axes.flat, scores, titles, strict=False):
        plot_piano_roll(score, ax, title)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)  # shown once, by the caller's display(); the inline backend would show it again
    return fig


def audio_player(score: Score, soundfont: str = "", repeats: int = 2, num_bars: float | None = None):
    """An ``IPython.display.Audio`` player of ``score`` played ``repeats`` times (the seam is heard).

    :param soundfont: a General MIDI SoundFont ("" : the one :func:`~mmmlib.evaluation.audio.find_soundfont` finds).
    :param num_bars: the loop's length in bars (else up to the bar after its last onset).
    :return: the player, or a one-line message saying why there is no sound.
    """
    from IPython.display import Audio

    from mmmlib.evaluation.audio import RenderError, find_soundfont, render_wav

    font = find_soundfont(soundfont)
    if font is None:
        return "no General MIDI SoundFont found: give `soundfont` (see the README, Listening)"
    with tempfile.TemporaryDirectory(prefix="mmmlib_studio_") as tmp:
        midi, wav = Path(tmp) / "loop.mid", Path(tmp) / "loop.wav"
        write_midi_atomic(score, midi)
        try:
            render_wav(midi, wav, font, repeats=repeats, num_bars=num_bars)
        except RenderError as exc:
            return f"no sound: {exc}"
        return Audio(data=wav.read_bytes())
