"""Figures shared by the notebooks (matplotlib/seaborn, saved as PNG).

Every function draws on a fresh figure, saves it when given a path, and returns the
figure so a notebook can display it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

if TYPE_CHECKING:
    from mmmlib.data import PrepResult

NOMML_LABELS = {0: "quarter", 1: "8th trip.", 2: "8th", 3: "16th trip.", 4: "16th", 6: "32nd", 12: "expressive"}
# General MIDI program families, 8 programs each (drums are a 17th family).
GM_FAMILIES = ["Piano", "Chrom. perc.", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass",
               "Reed", "Pipe", "Synth lead", "Synth pad", "Synth FX", "Ethnic", "Percussive", "Sound FX"]


def program_family(program: int, is_drum: bool) -> str:
    """General MIDI family name of a program ('Drums' for drum tracks)."""
    return "Drums" if is_drum else GM_FAMILIES[int(program) // 8]


def _save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def nomml_histogram(tracks: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Histogram of track NOMML (0-12), drums and pitched tracks side by side."""
    data = tracks.dropna(subset=["nomml"]).assign(
        kind=lambda d: np.where(d["is_drum"], "drums", "pitched"), nomml=lambda d: d["nomml"].astype(int)
    )
    counts = data.groupby(["nomml", "kind"]).size().unstack(fill_value=0).reindex(range(13), fill_value=0)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    counts.plot.bar(ax=ax, stacked=True, color=["#d62728", "#1f77b4"][: counts.shape[1]], width=0.85)
    ax.set_xticklabels([f"{i}\n{NOMML_LABELS.get(i, '')}" for i in range(13)], rotation=0, fontsize=8)
    ax.set_xlabel("NOMML (note onset median metric level)")
    ax.set_ylabel("tracks")
    ax.set_title(f"NOMML per track ({len(data)} tracks with notes)")
    return _save(fig, path)


def loop_duration_histogram(loops: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Histogram of detected loop durations in beats (4-32)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if len(loops):
        sns.histplot(loops["duration_beats"], bins=np.arange(3.5, 33.5, 1.0), ax=ax, color="#2ca02c")
    else:
        ax.text(0.5, 0.5, "no loops detected", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("loop duration (beats)")
    ax.set_ylabel("loops")
    ax.set_title(f"Detected loops ({len(loops)} loops)")
    return _save(fig, path)


def instrument_counts(tracks: pd.DataFrame, loops: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Tracks per GM family, with the share of tracks that contain at least one loop."""
    data = tracks.assign(family=[program_family(p, d) for p, d in zip(tracks["program"], tracks["is_drum"], strict=True)],
                         has_loop=tracks["n_loops"] > 0)
    table = data.groupby("family").agg(tracks=("md5", "size"), with_loop=("has_loop", "sum"))
    table = table.sort_values("tracks", ascending=True)
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.3 * len(table) + 1)))
    ax.barh(table.index, table["tracks"], color="#9ecae1", label="tracks")
    ax.barh(table.index, table["with_loop"], color="#3182bd", label="tracks with a loop")
    ax.set_xlabel("tracks")
    ax.set_title("Instruments (General MIDI families)")
    ax.legend(loc="lower right")
    return _save(fig, path)


def data_prep_figures(result: PrepResult, folder: str | Path) -> dict[str, Path]:
    """Draw the three data-prep figures into ``folder``; return their paths."""
    folder = Path(folder)
    paths = {
        "nomml": folder / "nomml_histogram.png",
        "loops": folder / "loop_durations.png",
        "instruments": folder / "instruments.png",
    }
    for fig in (nomml_histogram(result.tracks, paths["nomml"]),
                loop_duration_histogram(result.loops, paths["loops"]),
                instrument_counts(result.tracks, result.loops, paths["instruments"])):
        plt.close(fig)
    return paths


# --------------------------------------------------------------------------- tokenizer (02)
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


def piano_roll_pair(original, decoded, path: str | Path | None = None, max_beats: float = 16.0) -> plt.Figure:
    """An original score above its encode -> decode round trip (first ``max_beats`` beats)."""
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True, sharey=True)
    plot_piano_roll(original, axes[0], f"original (tpq {original.ticks_per_quarter})", max_beats)
    plot_piano_roll(decoded, axes[1], f"encoded then decoded (tpq {decoded.ticks_per_quarter})", max_beats)
    fig.tight_layout()
    return _save(fig, path)


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
    return _save(fig, path)


def bar_chart(table: pd.DataFrame, label: str, value: str, title: str, path: str | Path | None = None) -> plt.Figure:
    """Horizontal bars of ``table[value]`` by ``table[label]`` (vocabulary, control shares)."""
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.25 * len(table) + 1)))
    ax.barh(table[label].astype(str), table[value], color="#3182bd")
    ax.invert_yaxis()
    ax.set_xlabel(value)
    ax.set_title(title)
    return _save(fig, path)
