"""Figures of the data-preparation stage (01): NOMML, loop durations, instruments."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmmlib.core.gm import program_family
from mmmlib.core.plotting import save_png

if TYPE_CHECKING:
    from mmmlib.data.preparation import PrepResult

NOMML_LABELS = {0: "quarter", 1: "8th trip.", 2: "8th", 3: "16th trip.", 4: "16th", 6: "32nd", 12: "expressive"}


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
    return save_png(fig, path)


def loop_duration_histogram(loops: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Histogram of detected loop durations in beats (4-32)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if len(loops):
        ax.hist(loops["duration_beats"], bins=np.arange(3.5, 33.5, 1.0), color="#2ca02c", edgecolor="white")
    else:
        ax.text(0.5, 0.5, "no loops detected", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("loop duration (beats)")
    ax.set_ylabel("loops")
    ax.set_title(f"Detected loops ({len(loops)} loops)")
    return save_png(fig, path)


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
    return save_png(fig, path)


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
