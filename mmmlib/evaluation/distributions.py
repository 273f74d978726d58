"""Musical feature distributions of generated tracks against a reference set.

In the manner of Yang & Lerch (2020, the ``mgeval`` toolbox), each feature is computed
per track, the per-track values of each set are smoothed into a density, and the two
densities are compared by their *overlapping area* (OA, 1 = identical) and their
*Kullback-Leibler divergence* KL(reference || generated) (0 = identical; large when the
generated tracks miss regions where reference tracks lie).

- Continuous features (one number per track): a Gaussian kernel density estimate on
  a fine grid, with one bandwidth (Scott's rule on the pooled values) shared by both
  sets and by every bootstrap resample, so that differences come from the data and
  not from the smoothing.
- The pitch-class histogram (twelve numbers per track) is a categorical distribution:
  the mean of the per-track histograms, compared directly.

Confidence intervals resample whole generations (generated set) and whole files
(reference set) and are *basic* bootstrap intervals: resampling duplicates tracks, which
makes every resampled density bumpier and biases resampled overlaps down (and KL up), so
percentile intervals would sit below the estimate; the basic interval reflects that bias.

Pitch features (pitch range, polyphony, duration, pitch classes) use pitched tracks
only: a drum track's pitches name instruments, and its durations are arbitrary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.signal import fftconvolve

from mmmlib.evaluation.metrics import basic_ci, cluster_weights

if TYPE_CHECKING:
    from symusic import Score, Track

CONTINUOUS_FEATURES = {
    "pitch_range": "pitch range (semitones)",
    "note_density": "note density (notes per beat)",
    "polyphony": "polyphony (notes sounding per onset)",
    "ioi_beats": "inter-onset interval (beats)",
    "velocity": "velocity",
    "duration_beats": "note duration (beats)",
}
PITCH_CLASS_COLUMNS = [f"pc_{i}" for i in range(12)]
GRID_SIZE = 512
EPSILON = 1e-10  # density floor, so that KL stays finite where one set has no mass


# --------------------------------------------------------------------------- features
def track_features(track: Track, tpq: int, length_ticks: int) -> dict[str, float]:
    """Per-track features (NaN where undefined, e.g. pitch features of drums).

    :param track: a tick-time symusic track.
    :param tpq: ticks per quarter of its score.
    :param length_ticks: length of the piece (for the note density).
    """
    features = dict.fromkeys([*CONTINUOUS_FEATURES, *PITCH_CLASS_COLUMNS], float("nan"))
    if len(track.notes) == 0:
        return features
    notes = track.notes.numpy()
    onsets = np.unique(notes["time"])
    features["note_density"] = len(notes["time"]) / max(length_ticks / tpq, 1e-9)
    features["ioi_beats"] = float(np.diff(onsets).mean() / tpq) if onsets.size > 1 else float("nan")
    features["velocity"] = float(notes["velocity"].mean())
    if track.is_drum:
        return features
    pitch = notes["pitch"].astype(int)
    features["pitch_range"] = float(pitch.max() - pitch.min())
    features["duration_beats"] = float(notes["duration"].mean() / tpq)
    features["polyphony"] = _polyphony(notes["time"], notes["duration"], onsets)
    histogram = np.bincount(pitch % 12, minlength=12) / len(pitch)
    features.update(zip(PITCH_CLASS_COLUMNS, histogram.tolist(), strict=True))
    return features


def _polyphony(starts: np.ndarray, durations: np.ndarray, onsets: np.ndarray) -> float:
    """Mean number of notes sounding at each distinct onset (held notes included)."""
    ends = starts + np.maximum(durations, 1)  # a zero-length note still sounds at its onset
    started = np.searchsorted(np.sort(starts), onsets, "right")
    sounding = started - np.searchsorted(np.sort(ends), onsets, "right")
    return float(sounding.mean())


def score_features(score: Score, unit: str, track_indices: list[int] | None = None,
                   length_ticks: int | None = None) -> list[dict]:
    """Feature rows of the tracks of a score (all tracks, or ``track_indices``).

    :param unit: identifier of the file (the bootstrap resamples whole files/generations).
    :param length_ticks: length of the piece for the note density (default: the score's end).
    """
    length = max(int(length_ticks or score.end()), 1)
    indices = range(len(score.tracks)) if track_indices is None else track_indices
    rows = []
    for idx in indices:
        if not 0 <= idx < len(score.tracks):
            continue
        track = score.tracks[idx]
        rows.append({"unit": unit, "track_idx": idx, "is_drum": bool(track.is_drum),
                     **track_features(track, score.ticks_per_quarter, length)})
    return rows


def choose_reference_files(reference_dir: str | Path, split: str = "test", max_files: int = 200,
                           seed: int = 0) -> pd.DataFrame:
    """Rows of ``files.parquet`` of a split, at most ``max_files`` drawn with ``seed``.

    :param reference_dir: a data-prep output folder with ``files.parquet``.
    :param split: ``train``, ``valid`` or ``test`` (the split falls back to all files
        when it is empty, e.g. in a tiny corpus).
    """
    files = pd.read_parquet(Path(reference_dir) / "files.parquet")
    chosen = files[files["split"] == split]
    if chosen.empty:
        chosen = files
    if len(chosen) > max_files:
        chosen = chosen.sample(n=max_files, random_state=seed)
    return chosen


def read_reference_scores(reference_dir: str | Path, files: pd.DataFrame) -> Iterator[tuple[object, Score]]:
    """``(files row, score)`` of each readable reference file; an unreadable one is skipped and named."""
    from mmmlib.core.midi import read_score

    reference_dir = Path(reference_dir)
    for record in files.itertuples(index=False):
        path = resolve_path(record.path, [reference_dir, *reference_dir.parents])
        try:
            score = read_score(path, int(getattr(record, "row", -1)))
        except Exception as exc:  # a moved or unreadable file: say which, go on
            print(f"reference file skipped ({exc}): {path}")
            continue
        yield record, score


def reference_features(reference_dir: str | Path, split: str = "test", max_files: int = 200,
                       seed: int = 0) -> pd.DataFrame:
    """Features of the whole tracks of (at most ``max_files``, drawn with ``seed``) files of a split.

    Whole songs are longer than generated loops, which biases length-dependent features
    (pitch range grows with length); :func:`mmmlib.evaluation.reference.reference_windows`
    compares like with like.

    :param reference_dir: a data-prep output folder with ``files.parquet``.
    :param split: ``train``, ``valid`` or ``test`` (see :func:`choose_reference_files`).
    """
    chosen = choose_reference_files(reference_dir, split, max_files, seed)
    rows: list[dict] = []
    for record, score in read_reference_scores(reference_dir, chosen):
        rows.extend(score_features(score, unit=str(record.md5)))
    return pd.DataFrame(rows)


def resolve_path(path: str | Path, bases: list[Path]) -> Path:
    """``path`` if absolute or found from the working directory, else the first base holding it."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    for base in bases:
        if (base / path).exists():
            return base / path
    return path


# --------------------------------------------------------------------------- comparison
def overlap_and_kl(p: np.ndarray, q: np.ndarray, dx: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping area and KL(p || q) of densities on one grid of step ``dx`` (last axis).

    Works on one pair of densities or on a batch (one bootstrap resample per row).
    """
    p = np.maximum(np.asarray(p, dtype=float), EPSILON)
    q = np.maximum(np.asarray(q, dtype=float), EPSILON)
    p = p / (p.sum(axis=-1, keepdims=True) * dx)
    q = q / (q.sum(axis=-1, keepdims=True) * dx)
    overlap = np.minimum(np.minimum(p, q).sum(axis=-1) * dx, 1.0)
    kl = np.maximum(np.sum(p * np.log(p / q), axis=-1) * dx, 0.0)
    return overlap, kl


class BinnedKDE:
    """Gaussian KDE of 1-D samples on a fixed grid: bin the samples, then convolve.

    Binning turns a bootstrap resample into a weighted count per grid point, so all
    resamples are smoothed at once with one FFT convolution.
    """

    def __init__(self, pooled: np.ndarray, grid_size: int = GRID_SIZE) -> None:
        pooled = pooled[np.isfinite(pooled)]
        spread = pooled.std() if pooled.size > 1 else 0.0
        scale = max(abs(float(pooled.mean())), 1.0) if pooled.size else 1.0
        self.bandwidth = max(1.06 * spread * max(pooled.size, 1) ** -0.2, 1e-3 * scale)
        low, high = pooled.min() - 4 * self.bandwidth, pooled.max() + 4 * self.bandwidth
        self.grid = np.linspace(low, high, grid_size)
        self.dx = float(self.grid[1] - self.grid[0])
        half = min(int(np.ceil(4 * self.bandwidth / self.dx)), (grid_size - 1) // 2)
        self.kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * self.dx / self.bandwidth) ** 2)

    def bins(self, values: np.ndarray) -> np.ndarray:
        """Grid index of each value (precomputed once per set)."""
        return np.clip(np.rint((values - self.grid[0]) / self.dx).astype(int), 0, len(self.grid) - 1)

    def density(self, counts: np.ndarray) -> np.ndarray:
        """Densities on the grid from sample counts per grid point (one row per resample)."""
        counts = np.atleast_2d(counts).astype(float)
        smooth = np.maximum(fftconvolve(counts, self.kernel[None, :], mode="same", axes=1), 0.0)
        return smooth / np.maximum(smooth.sum(axis=1, keepdims=True) * self.dx, EPSILON)


def _unit_sums(units: pd.Series, rows, num_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-track vectors summed over the full set (row 0) and over each resample (rows 1..).

    :param rows: one vector per track, dense or sparse (e.g. one-hot grid bins).
    :return: ``(sums, counts)``: ``(1 + num_resamples, dim)`` summed vectors and track counts.
    """
    codes, weights = cluster_weights(units.astype(str).to_numpy(), num_resamples, seed)
    weights = np.vstack([np.ones((1, weights.shape[1])), weights])  # row 0: every unit once
    membership = sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))),
                                   shape=(weights.shape[1], len(codes)))
    per_unit = membership @ rows
    sums = np.asarray((per_unit.T @ weights.T).T)
    return sums, weights @ np.bincount(codes, minlength=weights.shape[1])


def _one_hot(bins: np.ndarray, size: int) -> sparse.csr_matrix:
    return sparse.csr_matrix((np.ones(len(bins)), (np.arange(len(bins)), bins)), shape=(len(bins), size))


def _no_data(row: dict) -> dict:
    return {**row, "overlap": np.nan, "overlap_ci": (np.nan, np.nan), "kl": np.nan, "kl_ci": (np.nan, np.nan)}


def _summarise(row: dict, overlap: np.ndarray, kl: np.ndarray) -> dict:
    """Row 0 is the point estimate, the others the bootstrap draws (basic intervals, see metrics.basic_ci)."""
    return {**row, "overlap": float(overlap[0]), "overlap_ci": basic_ci(overlap[0], overlap[1:], 0.0, 1.0),
            "kl": float(kl[0]), "kl_ci": basic_ci(kl[0], kl[1:], 0.0)}


def _continuous(gen: pd.DataFrame, ref: pd.DataFrame, feature: str, num_resamples: int, seed: int) -> dict:
    gen = gen[np.isfinite(gen[feature])]
    ref = ref[np.isfinite(ref[feature])]
    row = {"feature": feature, "num_generated": len(gen), "num_reference": len(ref),
           "generated_mean": gen[feature].mean(), "reference_mean": ref[feature].mean()}
    if gen.empty or ref.empty:
        return _no_data(row)
    kde = BinnedKDE(np.concatenate([gen[feature].to_numpy(float), ref[feature].to_numpy(float)]))
    size = len(kde.grid)
    gen_bins = _one_hot(kde.bins(gen[feature].to_numpy(float)), size)
    ref_bins = _one_hot(kde.bins(ref[feature].to_numpy(float)), size)
    gen_counts, _ = _unit_sums(gen["unit"], gen_bins, num_resamples, seed)
    ref_counts, _ = _unit_sums(ref["unit"], ref_bins, num_resamples, seed + 1)
    return _summarise(row, *overlap_and_kl(kde.density(ref_counts), kde.density(gen_counts), kde.dx))


def feature_densities(generated: pd.DataFrame, reference: pd.DataFrame,
                      feature: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The grid and the two densities (reference, generated) that the overlap of ``feature`` compares.

    :return: ``(grid, reference_density, generated_density)``, or None when a set has no value.
    """
    gen = generated[feature].to_numpy(float) if feature in generated else np.empty(0)
    ref = reference[feature].to_numpy(float) if feature in reference else np.empty(0)
    gen, ref = gen[np.isfinite(gen)], ref[np.isfinite(ref)]
    if gen.size == 0 or ref.size == 0:
        return None
    kde = BinnedKDE(np.concatenate([gen, ref]))
    size = len(kde.grid)
    densities = [kde.density(np.bincount(kde.bins(v), minlength=size))[0] for v in (ref, gen)]
    return kde.grid, densities[0], densities[1]


def _pitch_classes(gen: pd.DataFrame, ref: pd.DataFrame, num_resamples: int, seed: int) -> dict:
    gen = gen.dropna(subset=PITCH_CLASS_COLUMNS)
    ref = ref.dropna(subset=PITCH_CLASS_COLUMNS)
    row = {"feature": "pitch_class_histogram", "num_generated": len(gen), "num_reference": len(ref)}
    if gen.empty or ref.empty:
        return _no_data(row)
    gen_h, ref_h = gen[PITCH_CLASS_COLUMNS].to_numpy(float), ref[PITCH_CLASS_COLUMNS].to_numpy(float)
    gen_sums, gen_tracks = _unit_sums(gen["unit"], gen_h, num_resamples, seed)
    ref_sums, ref_tracks = _unit_sums(ref["unit"], ref_h, num_resamples, seed + 1)
    return _summarise(row, *overlap_and_kl(ref_sums / ref_tracks[:, None], gen_sums / gen_tracks[:, None]))


def compare_features(generated: pd.DataFrame, reference: pd.DataFrame, num_resamples: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """Overlapping area and KL(reference || generated) of every feature, with bootstrap CIs.

    :param generated: rows of :func:`score_features` for generated tracks (``unit`` = generation).
    :param reference: the same for reference tracks (``unit`` = file).
    :return: one row per feature: counts, means, ``overlap``, ``overlap_ci``, ``kl``, ``kl_ci``.
    """
    rows = [_continuous(generated, reference, f, num_resamples, seed) for f in CONTINUOUS_FEATURES]
    rows.append(_pitch_classes(generated, reference, num_resamples, seed))
    return pd.DataFrame(rows).set_index("feature")
