"""Figures of the data-preparation stage (01): NOMML, loop durations and loopability, instruments."""

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


KIND_COLORS = {"exact": "#2ca02c", "expressive": "#9467bd"}


def _kind_of(loops: pd.DataFrame) -> pd.Series:
    """The ``kind`` column, or ``exact`` for tables written before it existed."""
    return loops["kind"] if "kind" in loops else pd.Series("exact", index=loops.index)


def loop_duration_histogram(loops: pd.DataFrame, path: str | Path | None = None,
                            tracks: pd.DataFrame | None = None) -> plt.Figure:
    """Detected loop durations in beats, exact and expressive side by side; with ``tracks``, the loopability of expressive tracks."""
    with_scores = tracks is not None and "loopability" in tracks and tracks["loopability"].notna().any()
    fig, axes = plt.subplots(1, 2 if with_scores else 1, figsize=(11 if with_scores else 8, 3.5), squeeze=False)
    ax = axes[0, 0]
    kinds = _kind_of(loops)
    if len(loops):
        data = [loops.loc[kinds == kind, "duration_beats"] for kind in KIND_COLORS]
        labels = [f"{kind} ({len(d)})" for kind, d in zip(KIND_COLORS, data, strict=True)]
        ax.hist(data, bins=np.arange(0.5, 33.5, 1.0), color=list(KIND_COLORS.values()), label=labels,
                edgecolor="white", stacked=True)
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "no loops detected", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("loop duration (beats)")
    ax.set_ylabel("loops")
    ax.set_title(f"Detected loops ({len(loops)} loops)")
    if with_scores:
        scores = tracks["loopability"].dropna()
        axes[0, 1].hist(scores, bins=20, color=KIND_COLORS["expressive"], edgecolor="white")
        axes[0, 1].set_xlabel("loopability (0.7 max(C)/n + 0.3 sum(C)/(n(n-1)/2))")
        axes[0, 1].set_ylabel("tracks")
        axes[0, 1].set_title(f"Loopability of the {len(scores)} tracks searched for expressive loops")
    return save_png(fig, path)


def instrument_counts(tracks: pd.DataFrame, loops: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Tracks per GM family, with the share of tracks that contain an exact or an expressive loop."""
    kinds = _kind_of(loops)
    with_kind = {kind: set(zip(loops.loc[kinds == kind, "md5"], loops.loc[kinds == kind, "track_idx"], strict=True))
                 for kind in KIND_COLORS}
    keys = list(zip(tracks["md5"], tracks["track_idx"], strict=True))
    data = tracks.assign(family=[program_family(p, d) for p, d in zip(tracks["program"], tracks["is_drum"], strict=True)],
                         exact=[k in with_kind["exact"] for k in keys],
                         expressive=[k in with_kind["expressive"] for k in keys])
    table = data.groupby("family").agg(tracks=("md5", "size"), exact=("exact", "sum"), expressive=("expressive", "sum"))
    table = table.sort_values("tracks", ascending=True)
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.3 * len(table) + 1)))
    ax.barh(table.index, table["tracks"], color="#dddddd", label="tracks")
    ax.barh(table.index, table["exact"], height=0.4, align="edge", color=KIND_COLORS["exact"],
            label="with an exact loop")
    ax.barh(table.index, table["expressive"], height=-0.4, align="edge", color=KIND_COLORS["expressive"],
            label="with an expressive loop")
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
                loop_duration_histogram(result.loops, paths["loops"], result.tracks),
                instrument_counts(result.tracks, result.loops, paths["instruments"])):
        plt.close(fig)
    return paths
