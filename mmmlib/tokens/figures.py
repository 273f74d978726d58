"""Figures of the tokenizer stage (02): sequence lengths and a round-trip piano roll."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from mmmlib.core.plotting import plot_piano_roll, save_png


def piano_roll_pair(original, decoded, path: str | Path | None = None, max_beats: float = 16.0) -> plt.Figure:
    """An original score above its encode -> decode round trip (first ``max_beats`` beats)."""
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True, sharey=True)
    plot_piano_roll(original, axes[0], f"original (tpq {original.ticks_per_quarter})", max_beats)
    plot_piano_roll(decoded, axes[1], f"encoded then decoded (tpq {decoded.ticks_per_quarter})", max_beats)
    fig.tight_layout()
    return save_png(fig, path)


def sequence_length_histogram(lengths: dict[str, np.ndarray], max_seq_len: int,
                              path: str | Path | None = None) -> plt.Figure:
    """Histogram of sample lengths (ids) per split, with the ``max_seq_len`` limit."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bins = np.linspace(0, max_seq_len, 33)
    for split, values in lengths.items():
        if len(values):
            ax.hist(values, bins=bins, alpha=0.5, label=f"{split} ({len(values)})")
    ax.axvline(max_seq_len, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("sample length (ids)")
    ax.set_ylabel("samples")
    ax.set_title("Sequence lengths per split")
    ax.legend()
    return save_png(fig, path)
