"""Figures of the evaluation report (matplotlib/seaborn), saved as PNG and PDF.

Every function draws a fresh figure, saves ``<folder>/<name>.png`` and ``.pdf`` when
given a folder, and returns the figure so that the notebook displays it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mmmlib.evaluation.distributions import CONTINUOUS_FEATURES, PITCH_CLASS_COLUMNS, feature_densities

CONTROLLED_COLOR, BASELINE_COLOR, REFERENCE_COLOR = "#1f77b4", "#7f7f7f", "#2ca02c"
PITCH_CLASS_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def save_figure(fig: plt.Figure, folder: str | Path | None, name: str) -> plt.Figure:
    """Save ``fig`` as ``folder/name.png`` and ``folder/name.pdf`` (nothing when folder is None)."""
    if folder is not None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in (".png", ".pdf"):
            fig.savefig(folder / f"{name}{suffix}", dpi=120, bbox_inches="tight")
    return fig


def _yerr(values: pd.Series, cis: pd.Series) -> np.ndarray:
    """Asymmetric error bars from point estimates and (low, high) pairs; 0 where unknown."""
    low = np.array([c[0] for c in cis], dtype=float)
    high = np.array([c[1] for c in cis], dtype=float)
    err = np.vstack([values.to_numpy(float) - low, high - values.to_numpy(float)])
    return np.nan_to_num(np.clip(err, 0, None))


def confusion_heatmap(confusion: pd.DataFrame, control: str = "nomml",
                      folder: str | Path | None = None) -> plt.Figure:
    """Requested vs measured, each row normalised to 1, annotated with counts."""
    shares = confusion.div(confusion.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
    labels = [("none" if c == -1 else str(c)) for c in confusion.columns]
    fig, ax = plt.subplots(figsize=(max(5, 0.55 * len(labels) + 2), max(3.5, 0.45 * len(confusion) + 1.5)))
    sns.heatmap(shares, annot=confusion.to_numpy(), fmt="d", cmap="Blues", vmin=0, vmax=1, ax=ax,
                xticklabels=labels, yticklabels=[str(int(i)) for i in confusion.index],
                cbar_kws={"label": "share of the requested row"})
    ax.set_xlabel(f"measured {control}")
    ax.set_ylabel(f"requested {control}")
    ax.set_title(f"{control}: requested vs measured (counts; colour = row share)")
    return save_figure(fig, folder, f"{control}_confusion")


def accuracy_per_level(per_level: pd.DataFrame, control: str = "nomml",
                       folder: str | Path | None = None) -> plt.Figure:
    """Exact accuracy per requested level with 95% CIs, next to the no-control baseline."""
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(per_level) + 2), 3.5))
    x = np.arange(len(per_level))
    has_baseline = "baseline_exact_accuracy" in per_level
    width = 0.4 if has_baseline else 0.7
    ax.bar(x - (width / 2 if has_baseline else 0), per_level["exact_accuracy"], width,
           yerr=_yerr(per_level["exact_accuracy"], per_level["exact_accuracy_ci"]), capsize=3,
           color=CONTROLLED_COLOR, label="with control")
    if has_baseline:
        ax.bar(x + width / 2, per_level["baseline_exact_accuracy"], width,
               yerr=_yerr(per_level["baseline_exact_accuracy"], per_level["baseline_exact_accuracy_ci"]),
               capsize=3, color=BASELINE_COLOR, label="no control: P(measured = level)")
    ax.set_xticks(x, [str(int(v)) for v in per_level.index])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(f"requested {control}")
    ax.set_ylabel("exact accuracy")
    ax.set_title(f"{control}: accuracy per requested level (95% bootstrap CI)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
    return save_figure(fig, folder, f"{control}_accuracy_per_level")


def accuracy_by_group(by_group: pd.DataFrame, control: str = "nomml",
                      folder: str | Path | None = None) -> plt.Figure:
    """Exact accuracy for drums vs pitched tracks and per General MIDI family."""
    data = by_group.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(data) + 1)))
    y = np.arange(len(data))
    colors = [CONTROLLED_COLOR if s == "kind" else "#9ecae1" for s in data["split"]]
    ax.barh(y, data["exact_accuracy"], xerr=_yerr(data["exact_accuracy"], data["exact_accuracy_ci"]),
            color=colors, capsize=3)
    ax.set_yticks(y, [f"{g} (n={n})" for g, n in zip(data["group"], data["num_tracks"], strict=True)])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("exact accuracy")
    ax.set_title(f"{control}: accuracy by track kind and instrument family")
    return save_figure(fig, folder, f"{control}_accuracy_by_group")


LOOPABILITY_LABELS = {"tracks": "tracks with\nan exact loop", "files": "files with\na loop",
                      "seam": "seam continues\n(tracks with a loop)", "expressive": "tracks with an\nexpressive loop",
                      "marked_seam": "marked loops:\nseam continues",
                      "marked_repeat": "marked loops:\nrepeat in track"}


def loopability_bars(table: pd.DataFrame, folder: str | Path | None = None) -> plt.Figure:
    """Shares of tracks with an exact or expressive loop, of files with a loop, of seams that continue."""
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(table)), 3.5))
    x = np.arange(len(table))
    colors = ["#3182bd", "#6baed6", "#fd8d3c", "#31a354", "#e6550d"]
    ax.bar(x, table["share"].fillna(0), yerr=_yerr(table["share"].fillna(0), table["share_ci"]), capsize=4,
           color=[colors[i % len(colors)] for i in range(len(table))])
    for i, share in enumerate(table["share"]):
        if not np.isfinite(share):  # a missing share is not a zero one: say so on the bar
            ax.text(i, 0.02, "n/a", ha="center", va="bottom", fontsize=8)
    names = [f"{LOOPABILITY_LABELS.get(u, u)}\nn={n}" for u, n in zip(table.index, table["n"], strict=True)]
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share")
    ax.set_title("Loopability (95% bootstrap CI)")
    return save_figure(fig, folder, "loopability")


def loop_length_histogram(lengths: pd.Series, folder: str | Path | None = None, reference: pd.Series | None = None,
                          kind: str = "exact") -> plt.Figure:
    """Histogram of the durations (beats) of the loops found in generated tracks, next to the reference's.

    :param lengths: durations of the generated tracks' loops.
    :param reference: durations of the reference loops (``loops.parquet``) of the same kind; with
        them both histograms are shares of their loops, so that sets of any size compare.
    :param kind: ``exact`` (saved as ``loop_lengths``) or ``expressive`` (``loop_lengths_expressive``).
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    has_reference = reference is not None and len(reference) > 0
    sets = [(lengths, f"generated ({len(lengths)} loops)", CONTROLLED_COLOR)]
    if has_reference:
        sets.append((reference, f"reference ({len(reference)} loops)", REFERENCE_COLOR))
    longest = max((float(v.max()) for v, _, _ in sets if len(v)), default=32.0)
    bins = np.arange(0.5, max(33.5, longest + 1.5), 1.0)
    for values, label, color in sets:
        if len(values):
            sns.histplot(values, bins=bins, ax=ax, color=color, label=label, alpha=0.5,
                         stat="probability" if has_reference else "count", element="step")
    if not len(lengths):
        ax.text(0.5, 0.5, f"no {kind} loops detected in the generated tracks", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("loop duration (beats)")
    ax.set_ylabel("share of loops" if has_reference else "loops")
    ax.set_title(f"{kind.capitalize()} loops: generated" + (" vs reference" if has_reference else ""))
    if has_reference or len(lengths):
        ax.legend(fontsize=8)
    return save_figure(fig, folder, "loop_lengths" if kind == "exact" else f"loop_lengths_{kind}")


def distribution_overlays(generated: pd.DataFrame, reference: pd.DataFrame, table: pd.DataFrame,
                          folder: str | Path | None = None) -> plt.Figure:
    """Per-track feature densities, generated vs reference, titled with OA and KL.

    The curves are the densities the overlap is computed on (one shared bandwidth).
    """
    features = list(CONTINUOUS_FEATURES)
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.5))
    for ax, feature in zip(axes.flat, features, strict=False):
        curves = feature_densities(generated, reference, feature)
        for density, label, color in zip(curves[1:] if curves else (), ("reference", "generated"),
                                         (REFERENCE_COLOR, CONTROLLED_COLOR), strict=False):
            ax.plot(curves[0], density, color=color, label=label)
            ax.fill_between(curves[0], density, color=color, alpha=0.25)
        ax.set_title(_feature_title(table, feature, CONTINUOUS_FEATURES[feature]), fontsize=9)
        ax.set_yticks([])
    _pitch_class_panel(axes.flat[len(features)], generated, reference, table)
    axes.flat[-1].axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Per-track feature distributions: generated vs reference (OA = overlapping area)")
    fig.tight_layout()
    return save_figure(fig, folder, "distributions")


def _feature_title(table: pd.DataFrame, feature: str, label: str) -> str:
    if feature not in table.index or not np.isfinite(table.loc[feature, "overlap"]):
        return f"{label}\n(not enough data)"
    row = table.loc[feature]
    return f"{label}\nOA {row['overlap']:.2f}, KL {row['kl']:.2f}"


def _pitch_class_panel(ax: plt.Axes, generated: pd.DataFrame, reference: pd.DataFrame,
                       table: pd.DataFrame) -> None:
    x = np.arange(12)
    for offset, frame, label, color in ((-0.2, reference, "reference", REFERENCE_COLOR),
                                        (0.2, generated, "generated", CONTROLLED_COLOR)):
        present = [c for c in PITCH_CLASS_COLUMNS if c in frame]
        if len(present) == 12:
            means = frame[PITCH_CLASS_COLUMNS].dropna().mean().to_numpy()
            ax.bar(x + offset, means, 0.4, color=color, label=label)
    ax.set_xticks(x, PITCH_CLASS_NAMES, fontsize=7)
    ax.set_title(_feature_title(table, "pitch_class_histogram", "pitch classes (mean per track)"), fontsize=9)
