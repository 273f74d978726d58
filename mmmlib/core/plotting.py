"""Plot style and the drawing helpers every stage shares (matplotlib, saved as PNG).

Every function draws on a fresh figure (or a given axes), saves it when given a path,
and returns it so that a notebook can display it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def save_png(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    """Save ``fig`` as a PNG at ``path`` (folders created; nothing when path is None); return it."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_piano_roll(score, ax: plt.Axes, title: str = "", max_beats: float | None = None) -> plt.Axes:
    """Draw a score as a piano roll (one colour per track, time in beats) on ``ax``."""
    tpq = score.ticks_per_quarter
    colors = plt.get_cmap("tab10")
    for ti, track in enumerate(score.tracks):
        soa = track.notes.numpy()
        if len(soa["time"]) == 0:
            continue
        starts, lengths = soa["time"] / tpq, np.maximum(soa["duration"] / tpq, 0.05)
        if max_beats is not None:
            keep = starts < max_beats
            starts, lengths, pitches = starts[keep], lengths[keep], soa["pitch"][keep]
        else:
            pitches = soa["pitch"]
        label = f"{'drums' if track.is_drum else f'program {track.program}'}"
        ax.barh(pitches, lengths, left=starts, height=0.8, color=colors(ti % 10), label=label, linewidth=0)
    ax.set_xlabel("beats")
    ax.set_ylabel("pitch")
    ax.set_title(title)
    if len(score.tracks):
        ax.legend(loc="upper right", fontsize=7)
    return ax


def bar_chart(table: pd.DataFrame, label: str, value: str, title: str, path: str | Path | None = None) -> plt.Figure:
    """Horizontal bars of ``table[value]`` by ``table[label]`` (vocabulary, control shares)."""
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.25 * len(table) + 1)))
    ax.barh(table[label].astype(str), table[value], color="#3182bd")
    ax.invert_yaxis()
    ax.set_xlabel(value)
    ax.set_title(title)
    return save_png(fig, path)
