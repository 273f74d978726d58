"""Control fidelity, validity and cost of a generation run, with bootstrap intervals.

Every function takes the merged ``RESULTS.csv`` frame (see :mod:`mmmlib.evaluation.report`).
Confidence intervals are percentile intervals of a *cluster* bootstrap: whole
generations (``gen_id``) are resampled with replacement, because the tracks of one
generation share a prompt and a sampling run and are not independent.

Control fidelity of a control ``X`` compares ``X_requested`` with ``X_measured``
(``n_loops_detected`` for ``loop_count``, where 5 means "5 or more";
``loop_duration_bin_measured`` for the loop duration bin, added by
:func:`mmmlib.evaluation.loop_controls.with_loop_measures`) on the final, successful generations:

- *exact accuracy*: share of tracks whose measured value equals the request; a track
  without a measurement (NaN, e.g. an empty track) counts as a miss;
- *near accuracy*: share whose measured value is musically near the request: for NOMML
  the same feel (binary, ternary or expressive grid) at most one subdivision apart
  (:func:`mmmlib.data.nomml.near_levels`; ``|difference| <= 1`` would call quarter
  triplets a neighbour of eighths), for loop count and duration bins one step;
- *denominator*: generations that failed every attempt count as misses (their last
  attempt, :func:`mmmlib.generation.results.scored_generations`), never left out;
- *Spearman*: rank correlation of requested and measured (tracks with a measurement);
- *baseline*: tracks generated with ``X_requested == -1`` (no control). Their
  "accuracy" is the chance that the unconstrained model hits a target anyway:
  ``sum_l w_l * P(measured == l)``, where ``l`` runs over the requested levels and
  ``w_l`` is the share of controlled tracks that requested ``l`` (a uniform average for a
  balanced sweep). It is what the controlled accuracy would be if the model ignored
  the control, so the two numbers compare directly; near accuracy likewise. A baseline
  track without a measurement hits nothing (chance 0), like a controlled one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from mmmlib.core.gm import program_family
from mmmlib.generation.results import NO_CONTROL, control_accuracy, near_hits

# Controls whose measured column does not follow the `<name>_measured` pattern.
MEASURED_COLUMN = {"loop_count": "n_loops_detected"}
LOOP_COUNT_TOP = 5  # loop count requests run 0..5, where 5 means "5 or more"


# --------------------------------------------------------------------------- bootstrap
def resample_indices(groups: np.ndarray, num_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of ``num_resamples`` cluster-bootstrap resamples (clusters drawn with replacement).

    :param groups: one cluster label per row (e.g. ``gen_id``).
    :param num_resamples: number of resamples (0 yields nothing).
    :param seed: seed of the resampling, so reruns give the same intervals.
    """
    groups = np.asarray(groups)
    if num_resamples <= 0 or groups.size == 0:
        return
    # Sort rows by cluster so that each cluster is a contiguous block [start, start + size).
    order = np.argsort(groups, kind="stable")
    _, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    rng = np.random.default_rng(seed)
    for _ in range(num_resamples):
        picked = rng.integers(0, len(starts), len(starts))
        lengths = sizes[picked]
        offsets = np.repeat(starts[picked] - np.cumsum(lengths) + lengths, lengths)
        yield order[offsets + np.arange(lengths.sum())]


def cluster_bootstrap(groups: np.ndarray, statistic: Callable[[np.ndarray], float], num_resamples: int,
                      seed: int) -> np.ndarray:
    """Values of ``statistic`` (a function of row indices) on cluster-bootstrap resamples."""
    return np.array([statistic(idx) for idx in resample_indices(groups, num_resamples, seed)], dtype=float)


def cluster_weights(groups: np.ndarray, num_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """How often each cluster is drawn in each resample, for statistics that are sums over rows.

    Memory is ``num_resamples x num_clusters`` float64 (8 MB for 1000 resamples of 1000
    generations); floats so that the products below run on BLAS.

    :return: ``(codes, weights)``: the cluster index of each row, and a ``(num_resamples,
        num_clusters)`` matrix of draw counts (each row sums to the number of clusters).
    """
    uniques, codes = np.unique(np.asarray(groups), return_inverse=True)
    size = uniques.size
    if num_resamples <= 0 or size == 0:
        return codes, np.zeros((0, size))
    picks = np.random.default_rng(seed).integers(0, size, size=(num_resamples, size))
    flat = (picks + np.arange(num_resamples)[:, None] * size).ravel()
    return codes, np.bincount(flat, minlength=num_resamples * size).reshape(num_resamples, size).astype(float)


def weighted_mean_draws(codes: np.ndarray, weights: np.ndarray, values: np.ndarray,
                        rows: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap draws of the mean of ``values`` over ``rows`` (all rows when None; NaN left out).

    A resample's mean is (sum of the drawn clusters' sums) / (sum of their counts), so one
    matrix product gives every resample at once, and one set of draws (``weights`` from
    :func:`cluster_weights`) serves every subset of rows (per level, per instrument family).
    """
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values) if rows is None else rows & np.isfinite(values)
    sums = np.bincount(codes[keep], weights=values[keep], minlength=weights.shape[1])
    counts = np.bincount(codes[keep], minlength=weights.shape[1]).astype(float)
    totals = weights @ np.column_stack([sums, counts])  # one pass over the (large) weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals[:, 0] / totals[:, 1]


def bootstrap_mean(groups: np.ndarray, values: np.ndarray, num_resamples: int, seed: int) -> np.ndarray:
    """Cluster-bootstrap draws of the mean of ``values`` (NaN values left out), vectorised."""
    codes, weights = cluster_weights(groups, num_resamples, seed)
    return weighted_mean_draws(codes, weights, values)


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values; (nan, nan) when there are none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def basic_ci(estimate: float, values: np.ndarray, low: float = -np.inf, high: float = np.inf,
             level: float = 0.95) -> tuple[float, float]:
    """Basic (reverse percentile) bootstrap interval ``2*estimate - quantiles``, clipped to [low, high].

    For statistics whose resamples are biased, like the overlap of two smoothed densities
    (duplicated samples make each resample's density bumpier, so resampled overlaps fall
    below the estimate), the percentile interval can miss the estimate altogether; the
    basic interval corrects for that shift.
    """
    lower, upper = percentile_ci(values, level)
    if not np.isfinite(estimate) or not np.isfinite(lower):
        return (float("nan"), float("nan"))
    return (float(np.clip(2 * estimate - upper, low, high)), float(np.clip(2 * estimate - lower, low, high)))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation, nan when either side is constant or there are < 3 pairs."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(midranks(x), midranks(y))[0, 1])


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged; by counting for small integer values (levels, bins), no sort.

    The bootstrap of Spearman ranks a thousand resamples; counting is what keeps it fast.
    """
    low, high = values.min(), values.max()
    if high - low > 4096 or not np.all(values == np.round(values)):
        return rankdata(values)
    codes = (values - low).astype(np.int64)
    counts = np.bincount(codes)
    below = np.cumsum(counts) - counts
    return (below + (counts + 1) / 2)[codes]


# --------------------------------------------------------------------------- which rows


def controls_in(results: pd.DataFrame) -> list[str]:
    """Names of the controls requested somewhere in ``results`` (NOMML first).

    A control ``X`` counts when the frame has ``X_requested`` and its measured column and
    at least one row requests a value other than -1.
    """
    names = []
    for column in results.columns:
        if not column.endswith("_requested"):
            continue
        name = column[: -len("_requested")]
        requested = pd.to_numeric(results[column], errors="coerce")
        if measured_column(name) in results and (requested.notna() & (requested != NO_CONTROL)).any():
            names.append(name)
    return sorted(names, key=lambda n: (n != "nomml", n))


def measured_column(name: str) -> str:
    """Column holding the measured value of control ``name``."""
    return MEASURED_COLUMN.get(name, f"{name}_measured")


# --------------------------------------------------------------------------- fidelity
@dataclass
class Fidelity:
    """How well one control is followed (see the module docstring for definitions)."""

    name: str
    overall: dict
    per_level: pd.DataFrame
    by_group: pd.DataFrame
    confusion: pd.DataFrame


def _hits(name: str, requested: np.ndarray, measured: np.ndarray) -> dict[str, np.ndarray]:
    """Per-track exact and near hits (0/1); a missing measurement is a miss."""
    known = np.isfinite(measured)
    return {"exact_accuracy": np.where(known, measured == requested, False).astype(float),
            "near_accuracy": near_hits(name, requested, measured).astype(float)}


def _chances(name: str, measured: np.ndarray, weights: pd.Series) -> dict[str, np.ndarray]:
    """Per baseline track: sum_l w_l [measured hits l] (exact, near); 0 without a measurement.

    Their mean is the baseline accuracy of the module docstring.
    """
    levels, w = weights.index.to_numpy(dtype=float), weights.to_numpy(dtype=float)
    exact = measured[:, None] == levels[None, :]  # NaN equals nothing
    near = near_hits(name, levels[None, :], measured[:, None])
    return {"exact_accuracy": exact @ w, "near_accuracy": near @ w}


def _estimate(values: dict[str, np.ndarray], draws_of: tuple[np.ndarray, np.ndarray],
              rows: np.ndarray | None = None, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
    """Means over ``rows`` of per-track values, their bootstrap CIs and raw draws.

    :param draws_of: ``(codes, weights)`` of :func:`cluster_weights` for the whole set.
    """
    row, draws = {}, {}
    for key, per_track in values.items():
        draws[key] = weighted_mean_draws(*draws_of, per_track, rows)
        known = per_track if rows is None else per_track[rows]
        known = known[np.isfinite(known)]
        row[f"{prefix}{key}"] = float(known.mean()) if known.size else float("nan")
        row[f"{prefix}{key}_ci"] = percentile_ci(draws[key])
    return row, draws


def control_fidelity(final: pd.DataFrame, name: str, num_resamples: int = 1000, seed: int = 0) -> Fidelity:
    """Fidelity of control ``name`` on the final generations, with its no-control baseline.

    Per-level and per-group intervals reuse the same resamples of generations.

    :param final: the rows to score: :func:`mmmlib.generation.results.scored_generations` (the
        final generations, and the failed ones as misses), or only the final generations.
    :param name: control name, e.g. ``"nomml"`` (columns ``nomml_requested``/``nomml_measured``).
    :param num_resamples: bootstrap resamples (generations resampled with replacement).
    :param seed: bootstrap seed.
    """
    final = final.reset_index(drop=True)
    requested = pd.to_numeric(final[f"{name}_requested"], errors="coerce")
    measured = pd.to_numeric(final[measured_column(name)], errors="coerce")
    if name == "loop_count":  # the top request means "5 or more": compare detected counts on that scale
        measured = measured.clip(upper=LOOP_COUNT_TOP)
    # Masked series, not whole ones: assigning to an empty frame would adopt the series' index.
    is_controlled, is_baseline = requested.notna() & (requested != NO_CONTROL), requested == NO_CONTROL
    controlled = final[is_controlled].assign(req=requested[is_controlled], meas=measured[is_controlled])
    baseline = final[is_baseline].assign(meas=measured[is_baseline])
    req, meas = controlled["req"].to_numpy(float), controlled["meas"].to_numpy(float)
    groups = controlled["gen_id"].astype(str).to_numpy()
    draws_of = cluster_weights(groups, num_resamples, seed)
    base_draws_of = cluster_weights(baseline["gen_id"].astype(str).to_numpy(), num_resamples, seed + 1)
    overall, draws = _estimate(_hits(name, req, meas), draws_of)
    overall["spearman"] = spearman(req, meas)
    overall["spearman_ci"] = percentile_ci(
        cluster_bootstrap(groups, lambda idx: spearman(req[idx], meas[idx]), num_resamples, seed))
    overall.update(control=name, num_tracks=len(controlled), num_generations=int(pd.unique(groups).size),
                   num_baseline_tracks=len(baseline))
    if len(baseline):
        weights = controlled["req"].value_counts(normalize=True).sort_index()
        base_row, base_draws = _estimate(_chances(name, baseline["meas"].to_numpy(float), weights), base_draws_of,
                                         prefix="baseline_")
        overall.update(base_row)
        overall["gain"] = overall["exact_accuracy"] - overall["baseline_exact_accuracy"]
        overall["gain_ci"] = percentile_ci(draws["exact_accuracy"] - base_draws["exact_accuracy"])
    points = control_accuracy(final, name, measured_column(name))
    per_level = _per_level(name, points, req, meas, draws_of, baseline["meas"].to_numpy(float), base_draws_of)
    return Fidelity(name, overall, per_level, _by_group(name, controlled, draws_of), confusion_matrix(req, meas))


def _per_level(name: str, points: pd.DataFrame, req: np.ndarray, meas: np.ndarray, draws_of: tuple,
               base_meas: np.ndarray, base_draws_of: tuple) -> pd.DataFrame:
    """Accuracy per requested level with bootstrap CIs, next to the baseline's P(measured == level).

    :param points: the point estimates, :func:`mmmlib.generation.results.control_accuracy`
        (the table 04 shows), to which this adds the intervals and the baseline.
    """
    hits = _hits(name, req, meas)
    rows = []
    for level, point in points.iterrows():
        mask = req == level
        row = {"level": level, "num_tracks": int(point["num_tracks"]), "measured_mean": point["measured_mean"]}
        for key, per_track in hits.items():
            row[key] = float(point[key])
            row[f"{key}_ci"] = percentile_ci(weighted_mean_draws(*draws_of, per_track, mask))
        if base_meas.size:
            chances = _chances(name, base_meas, pd.Series([1.0], index=[level]))
            row.update(_estimate(chances, base_draws_of, prefix="baseline_")[0])
        rows.append(row)
    return pd.DataFrame(rows).set_index("level") if rows else pd.DataFrame()


def _by_group(name: str, controlled: pd.DataFrame, draws_of: tuple) -> pd.DataFrame:
    """Accuracy (with CIs) and Spearman split by drums vs pitched and by General MIDI family."""
    no_drums = pd.Series(False, controlled.index)
    is_drum = _as_bool(controlled["is_drum"]) if "is_drum" in controlled else no_drums
    program = pd.to_numeric(controlled.get("program", pd.Series(np.nan, controlled.index)), errors="coerce")
    kind = np.where(is_drum, "drums", "pitched")
    family = np.array([program_family(p, d) for p, d in zip(program, is_drum, strict=True)], dtype=object)
    req, meas = controlled["req"].to_numpy(float), controlled["meas"].to_numpy(float)
    hits = _hits(name, req, meas)
    rows = []
    for split, labels in (("kind", kind), ("family", family)):
        for value in sorted(set(labels)):
            mask = labels == value
            row, _ = _estimate(hits, draws_of, rows=mask)
            rows.append({"split": split, "group": value, "num_tracks": int(mask.sum()), **row,
                         "spearman": spearman(req[mask], meas[mask])})
    return pd.DataFrame(rows)


def confusion_matrix(requested: np.ndarray, measured: np.ndarray) -> pd.DataFrame:
    """Counts of (requested, measured) pairs; a missing measurement is the column ``-1``."""
    measured = np.where(np.isfinite(measured), measured, NO_CONTROL)
    table = pd.crosstab(pd.Series(requested.astype(int), name="requested"),
                        pd.Series(measured.astype(int), name="measured"))
    columns = sorted(set(table.columns) | set(table.index))
    return table.reindex(columns=columns, fill_value=0)


def fidelity_table(fidelities: list[Fidelity]) -> pd.DataFrame:
    """One row per control: accuracies, CIs, Spearman, baseline and gain."""
    if not fidelities:
        return pd.DataFrame()
    return pd.DataFrame([f.overall for f in fidelities]).set_index("control")


def _as_bool(series: pd.Series) -> pd.Series:
    """Booleans from CSV text ('True'/'False', '1'/'0') or numbers; missing is False."""
    if series.dtype == bool:
        return series
    text = series.astype(str).str.strip().str.lower()
    return text.isin(["true", "1", "1.0", "yes"])


# --------------------------------------------------------------------------- validity and cost
def attempts(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (gen_id, attempt): ok when every row of the attempt is ok, plus its cost.

    ``n_tokens`` and ``seconds`` are summed over the attempt's rows (one row per generated
    track, each with its own cost).
    """
    keyed = results.assign(is_ok=results["status"].astype(str).str.strip().str.lower().eq("ok"),
                           reason=results["reason"].fillna("").astype(str))
    return keyed.groupby(["gen_id", "attempt"], sort=True).agg(
        ok=("is_ok", "all"),
        reason=("reason", lambda r: next((x for x in r if x), "")),
        n_tokens=("n_tokens", lambda v: pd.to_numeric(v, errors="coerce").sum()),
        seconds=("seconds", lambda v: pd.to_numeric(v, errors="coerce").sum()),
    ).reset_index()


def validity(results: pd.DataFrame, final: pd.DataFrame) -> dict:
    """Headline validity and cost numbers of a run.

    :param results: every row of the merged ``RESULTS.csv`` (failed attempts included).
    :param final: rows of the final successful generations, with a boolean ``has_loop``.
    :return: ``validity`` (share of attempts that succeeded), ``generation_success_rate``
        (share of generations with a successful attempt), ``attempts_per_success``, and
        ``tokens_per_loop``/``seconds_per_loop`` (everything spent, failures included, per
        generated loop, i.e. per successful generation) and ``tokens_per_detected_loop``
        (the same per track in which the loop detector finds a loop).
    """
    table = attempts(results)
    num_success = int(table.loc[table["ok"], "gen_id"].nunique())
    num_loops = int(final["has_loop"].sum()) if "has_loop" in final else 0
    num_tracks = len(final)
    return {
        "num_generations": int(table["gen_id"].nunique()),
        "num_successful_generations": num_success,
        "num_attempts": len(table),
        "num_failed_attempts": int((~table["ok"]).sum()),
        "validity": float(table["ok"].mean()) if len(table) else float("nan"),
        "generation_success_rate": num_success / table["gen_id"].nunique() if len(table) else float("nan"),
        "attempts_per_success": len(table) / num_success if num_success else float("nan"),
        "tokens_per_track": table["n_tokens"].sum() / num_tracks if num_tracks else float("nan"),
        "tokens_per_loop": table["n_tokens"].sum() / num_success if num_success else float("nan"),
        "seconds_per_loop": table["seconds"].sum() / num_success if num_success else float("nan"),
        "tokens_per_detected_loop": table["n_tokens"].sum() / num_loops if num_loops else float("nan"),
    }


def status_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Attempts per status and failure reason, most frequent first."""
    table = attempts(results)
    table["status"] = np.where(table["ok"], "ok", "failed")
    counts = table.groupby(["status", "reason"]).size().rename("attempts").reset_index()
    counts["share"] = counts["attempts"] / max(len(table), 1)
    return counts.sort_values("attempts", ascending=False, ignore_index=True)
