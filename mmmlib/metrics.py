"""Control fidelity, validity and cost of a generation run, with bootstrap intervals.

Every function takes the merged ``RESULTS.csv`` frame (see :mod:`mmmlib.evaluate`).
Confidence intervals are percentile intervals of a *cluster* bootstrap: whole
generations (``gen_id``) are resampled with replacement, because the tracks of one
generation share a prompt and a sampling run and are not independent.

Control fidelity of a control ``X`` compares ``X_requested`` with ``X_measured``
(``n_loops_detected`` for ``loop_count``) on the final, successful generations:

- *exact accuracy*: share of tracks whose measured value equals the request; a track
  without a measurement (NaN, e.g. an empty track) counts as a miss;
- *within-1 accuracy*: share with ``|measured - requested| <= 1`` (one level or bin);
- *Spearman*: rank correlation of requested and measured (tracks with a measurement);
- *baseline*: tracks generated with ``X_requested == -1`` (no control). Their
  "accuracy" is the chance that the unconstrained model hits a target anyway:
  ``sum_l w_l * P(measured == l)``, where ``l`` runs over the requested levels and
  ``w_l`` is the share of controlled tracks that requested ``l`` (a uniform average for a
  balanced sweep). It is what the controlled accuracy would be if the model ignored
  the control, so the two numbers compare directly; within-1 likewise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

NO_CONTROL = -1
# Controls whose measured column does not follow the `<name>_measured` pattern.
MEASURED_COLUMN = {"loop_count": "n_loops_detected"}
GM_FAMILIES = ["Piano", "Chrom. perc.", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass",
               "Reed", "Pipe", "Synth lead", "Synth pad", "Synth FX", "Ethnic", "Percussive", "Sound FX"]


# --------------------------------------------------------------------------- bootstrap
def cluster_bootstrap(groups: np.ndarray, statistic: Callable[[np.ndarray], float], num_resamples: int,
                      seed: int) -> np.ndarray:
    """Values of ``statistic`` on ``num_resamples`` cluster-bootstrap resamples.

    :param groups: one cluster label per row (e.g. ``gen_id``).
    :param statistic: maps an array of row indices (with repeats) to a number.
    :param num_resamples: number of resamples (0 gives an empty array).
    :param seed: seed of the resampling, so reruns give the same intervals.
    :return: float array of length ``num_resamples``.
    """
    groups = np.asarray(groups)
    if num_resamples <= 0 or groups.size == 0:
        return np.empty(0)
    # Sort rows by cluster so that each cluster is a contiguous block [start, start + size).
    order = np.argsort(groups, kind="stable")
    _, starts, sizes = np.unique(groups[order], return_index=True, return_counts=True)
    rng = np.random.default_rng(seed)
    values = np.empty(num_resamples)
    for b in range(num_resamples):
        picked = rng.integers(0, len(starts), len(starts))
        lengths = sizes[picked]
        offsets = np.repeat(starts[picked] - np.cumsum(lengths) + lengths, lengths)
        values[b] = statistic(order[offsets + np.arange(lengths.sum())])
    return values


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values; (nan, nan) when there are none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation, nan when either side is constant or there are < 3 pairs."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


# --------------------------------------------------------------------------- which rows
def program_family(program: float, is_drum: bool) -> str:
    """General MIDI family (8 programs each) of a track; drums are their own family."""
    if bool(is_drum):
        return "Drums"
    if not np.isfinite(program) or not 0 <= program < 128:
        return "Unknown"
    return GM_FAMILIES[int(program) // 8]


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


def _accuracy_stats(requested: np.ndarray, measured: np.ndarray) -> dict[str, Callable]:
    exact = np.where(np.isfinite(measured), measured == requested, False).astype(float)
    within1 = np.where(np.isfinite(measured), np.abs(measured - requested) <= 1, False).astype(float)
    return {
        "exact_accuracy": lambda idx: exact[idx].mean(),
        "within1_accuracy": lambda idx: within1[idx].mean(),
        "spearman": lambda idx: spearman(requested[idx], measured[idx]),
    }


def _baseline_stats(measured: np.ndarray, weights: pd.Series) -> dict[str, Callable]:
    levels, w = weights.index.to_numpy(dtype=float), weights.to_numpy(dtype=float)

    def chance(idx: np.ndarray, tolerance: float) -> float:
        values = measured[idx]
        values = values[np.isfinite(values)]
        if values.size == 0:
            return float("nan")
        hits = np.abs(values[:, None] - levels[None, :]) <= tolerance
        return float(hits.mean(axis=0) @ w)

    return {"exact_accuracy": lambda idx: chance(idx, 0), "within1_accuracy": lambda idx: chance(idx, 1)}


def _estimate(stats: dict[str, Callable], groups: np.ndarray, num_resamples: int, seed: int,
              prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
    """Point estimates, CIs and the raw bootstrap values of each statistic."""
    everything = np.arange(len(groups))
    row, draws = {}, {}
    for key, stat in stats.items():
        draws[key] = cluster_bootstrap(groups, stat, num_resamples, seed)
        row[f"{prefix}{key}"] = float(stat(everything)) if len(groups) else float("nan")
        row[f"{prefix}{key}_ci"] = percentile_ci(draws[key])
    return row, draws


def control_fidelity(final: pd.DataFrame, name: str, num_resamples: int = 1000, seed: int = 0) -> Fidelity:
    """Fidelity of control ``name`` on the final generations, with its no-control baseline.

    :param final: rows of successful final generations (:func:`mmmlib.evaluate.final_generations`).
    :param name: control name, e.g. ``"nomml"`` (columns ``nomml_requested``/``nomml_measured``).
    :param num_resamples: bootstrap resamples (generations resampled with replacement).
    :param seed: bootstrap seed.
    """
    requested = pd.to_numeric(final[f"{name}_requested"], errors="coerce")
    measured = pd.to_numeric(final[measured_column(name)], errors="coerce")
    controlled = final[requested.notna() & (requested != NO_CONTROL)].assign(
        req=requested, meas=measured)
    baseline = final[requested == NO_CONTROL].assign(meas=measured)
    req, meas = controlled["req"].to_numpy(float), controlled["meas"].to_numpy(float)
    groups = controlled["gen_id"].astype(str).to_numpy()
    overall, draws = _estimate(_accuracy_stats(req, meas), groups, num_resamples, seed)
    overall.update(control=name, num_tracks=len(controlled), num_generations=int(pd.unique(groups).size),
                   num_baseline_tracks=len(baseline))
    weights = controlled["req"].value_counts(normalize=True).sort_index()
    base_groups = baseline["gen_id"].astype(str).to_numpy()
    base_meas = baseline["meas"].to_numpy(float)
    if len(baseline):
        base_row, base_draws = _estimate(_baseline_stats(base_meas, weights), base_groups, num_resamples,
                                         seed + 1, prefix="baseline_")
        overall.update(base_row)
        gain = draws["exact_accuracy"] - base_draws["exact_accuracy"]
        overall["gain"] = overall["exact_accuracy"] - overall["baseline_exact_accuracy"]
        overall["gain_ci"] = percentile_ci(gain)
    per_level = _per_level(controlled, baseline, num_resamples, seed)
    by_group = _by_group(controlled, num_resamples, seed)
    return Fidelity(name, overall, per_level, by_group, confusion_matrix(req, meas))


def _per_level(controlled: pd.DataFrame, baseline: pd.DataFrame, num_resamples: int,
               seed: int) -> pd.DataFrame:
    """Accuracy per requested level, next to the baseline's P(measured == level)."""
    rows = []
    base_groups = baseline["gen_id"].astype(str).to_numpy()
    base_meas = baseline["meas"].to_numpy(float)
    for level, part in controlled.groupby("req"):
        stats = _accuracy_stats(part["req"].to_numpy(float), part["meas"].to_numpy(float))
        stats.pop("spearman")  # constant request within a level: undefined
        row, _ = _estimate(stats, part["gen_id"].astype(str).to_numpy(), num_resamples, seed)
        row.update(level=level, num_tracks=len(part))
        if len(baseline):
            one = pd.Series([1.0], index=[level])
            base, _ = _estimate(_baseline_stats(base_meas, one), base_groups, num_resamples, seed + 1,
                                prefix="baseline_")
            row.update(base)
        rows.append(row)
    return pd.DataFrame(rows).set_index("level") if rows else pd.DataFrame()


def _by_group(controlled: pd.DataFrame, num_resamples: int, seed: int) -> pd.DataFrame:
    """Accuracy split by drums vs pitched and by General MIDI family."""
    is_drum = _as_bool(controlled["is_drum"]) if "is_drum" in controlled else pd.Series(False, controlled.index)
    program = pd.to_numeric(controlled.get("program", pd.Series(np.nan, controlled.index)), errors="coerce")
    keyed = controlled.assign(kind=np.where(is_drum, "drums", "pitched"),
                              family=[program_family(p, d) for p, d in zip(program, is_drum)])
    rows = []
    for split in ("kind", "family"):
        for value, part in keyed.groupby(split):
            stats = _accuracy_stats(part["req"].to_numpy(float), part["meas"].to_numpy(float))
            row, _ = _estimate(stats, part["gen_id"].astype(str).to_numpy(), num_resamples, seed)
            rows.append({"split": split, "group": value, "num_tracks": len(part), **row})
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
    return pd.DataFrame([f.overall for f in fidelities]).set_index("control") if fidelities else pd.DataFrame()


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
    keyed = results.assign(is_ok=results["status"].astype(str).str.strip().eq("ok"),
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
        ``tokens_per_loop``/``seconds_per_loop`` (everything spent, failures included,
        per loop track obtained).
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
        "tokens_per_loop": table["n_tokens"].sum() / num_loops if num_loops else float("nan"),
        "seconds_per_loop": table["seconds"].sum() / num_loops if num_loops else float("nan"),
    }


def status_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Attempts per status and failure reason, most frequent first."""
    table = attempts(results)
    table["status"] = np.where(table["ok"], "ok", "failed")
    counts = table.groupby(["status", "reason"]).size().rename("attempts").reset_index()
    counts["share"] = counts["attempts"] / max(len(table), 1)
    return counts.sort_values("attempts", ascending=False, ignore_index=True)
