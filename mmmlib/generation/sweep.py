"""Generation runs (``04_generate``): many loops per NOMML level, checked, retried, resumable.

Layout, as the MIDI-GPT-Loop scripts use it::

    {output_folder}/{label}/MIDI/{gen_id}_a{attempt}.mid
    {output_folder}/{label}/MIDI/loops/{gen_id}_a{attempt}_t{track}_{k}.mid   loops the model marked
    {output_folder}/{label}/RESULTS_{rank}.csv     one row per generated track and attempt

The run speaks the model's token language (:func:`~mmmlib.generation.language.language_of`):
NOMML and loop controls are asked by meaning (:meth:`Language.control_values
<mmmlib.generation.language.Language.control_values>`), so the same parameters drive an
mmmlib model and the published MIDI-GPT-Loop one. Loops a published-dialect model marks
(``Loop_Start`` ... ``Loop_End``) are written as files of their own and checked with the loop
detector (:mod:`mmmlib.generation.marked_loops`).

A row's ``n_tokens`` are the ids its track took (header, bars, ``Track_End``) and its
``seconds`` that share of the generation's time (itself a share of its batch's time), so
sums over the rows of an attempt are the attempt's cost.

The generations of a run are the pairs (NOMML level, index < ``num_generations``) in a
fixed order; rank ``r`` of ``num_ranks`` takes every ``num_ranks``-th one from ``r``, so
ranks never overlap. Seeds come from ``(seed, index, attempt)``: a generation is the same
whichever rank, batch or rerun makes it. The design is *paired*: generation ``index`` of
every NOMML level, and of the no-control baseline, has the same programs and the same
sampling seeds, so differences between levels are the control's, not the instruments' or
the noise's (common random numbers tighten the comparison).

Crash safety: a MIDI file is written to a temporary name and renamed; a generation's
rows (all its attempts) are appended in one write, flushed and fsynced, after its MIDI
files. Each row says how many rows its generation wrote (``gen_rows``), so on restart a
generation cut short by a kill (necessarily the last one in the file) is cut off the
file, then generated again; complete generations are skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mmmlib.core.midi import write_midi_atomic
from mmmlib.data.loops import detect_loops
from mmmlib.data.nomml import track_nomml
from mmmlib.generation.engine import generate_batch
from mmmlib.generation.language import language_of
from mmmlib.generation.loop import Generation, LoopRequest, TrackSpec, derive_seed
from mmmlib.generation.marked_loops import is_repeating, write_loop_files
from mmmlib.generation.results import NO_CONTROL, append_durably, read_results, resume_results, rows_text
from mmmlib.generation.sampling import Sampling

if TYPE_CHECKING:
    from collections.abc import Sequence

    import matplotlib.pyplot as plt
    from transformers import PreTrainedModel

    from mmmlib.generation.language import Language
    from mmmlib.generation.params import GenerateParams

SWEEP = -2  # the `nomml` value that means: no control, then every level 0-12
PROGRAM_POOL = (-1, 0, 4, 24, 25, 27, 30, 32, 33, 38, 48, 52, 56, 61, 65, 73, 80, 81, 89, 90)


@dataclass(frozen=True)
class GenSpec:
    """One generation of a run: its id, NOMML level (-1: no control) and index in the level."""

    gen_id: str
    nomml: int
    index: int


def nomml_levels(nomml: int) -> list[int]:
    """Levels of a run: ``[nomml]``, or -1 then 0..12 for the sweep (-2)."""
    return [NO_CONTROL, *range(13)] if nomml == SWEEP else [nomml]


def gen_id_of(nomml: int, index: int) -> str:
    """``nomml05_00012`` (level 5), ``nocontrol_00012`` (no NOMML control)."""
    return f"{'nocontrol' if nomml == NO_CONTROL else f'nomml{nomml:02d}'}_{index:05d}"


def plan_generations(levels: Sequence[int], num_generations: int, rank: int, num_ranks: int) -> list[GenSpec]:
    """This rank's generations: every ``num_ranks``-th pair (level, index) from ``rank``."""
    pairs = [(level, i) for level in levels for i in range(num_generations)]
    return [GenSpec(gen_id_of(level, i), level, i) for k, (level, i) in enumerate(pairs) if k % num_ranks == rank]


def beats_per_bar(time_signature: str) -> float:
    """Quarter-note beats in a bar of ``"n/d"`` (4/4 when unknown)."""
    if not time_signature:
        return 4.0
    numerator, denominator = (int(x) for x in time_signature.split("/"))
    return numerator * 4 / denominator


def choose_programs(p: GenerateParams, spec: GenSpec) -> list[int]:
    """The run's programs, or a seeded random pick (at most one drum track) per generation."""
    if not isinstance(p.programs, str):
        return [int(x) for x in p.programs]
    rng = np.random.default_rng(derive_seed(p.seed, spec.index, 1 << 20))  # paired: not the level
    pitched = [x for x in PROGRAM_POOL if x >= 0]
    drums = p.n_tracks > 1 and rng.random() < 0.5
    picks = [int(x) for x in rng.choice(pitched, size=p.n_tracks - drums, replace=False)]
    return [-1, *picks] if drums else picks


def loop_duration_beats(p: GenerateParams) -> float:
    """The requested loop duration in quarter notes."""
    return p.loop_duration_bars * beats_per_bar(p.time_signature)


def loops_requested(p: GenerateParams, nomml: int) -> bool:
    """Whether a generation requests the loop controls: when ``loop_controls`` is on, except
    for the sweep's no-control generations, which request nothing (the unconstrained model
    is the baseline of every control, loop controls included)."""
    return p.loop_controls and not (p.nomml == SWEEP and nomml == NO_CONTROL)


def track_controls(p: GenerateParams, nomml: int, lang: Language) -> dict[str, Any]:
    """Track controls of every track of a generation, in the language's names."""
    controls: dict[str, Any] = dict(p.track_controls)
    loops = loops_requested(p, nomml)
    controls.update(lang.control_values(
        nomml=None if nomml == NO_CONTROL else nomml,
        loop_count=p.loop_count if loops else None,
        loop_duration_beats=loop_duration_beats(p) if loops else None))
    return controls


def loop_request(p: GenerateParams, spec: GenSpec, attempt: int, lang: Language) -> LoopRequest:
    """The request of one attempt of one generation."""
    controls = track_controls(p, spec.nomml, lang)
    tracks = tuple(TrackSpec(program, controls) for program in choose_programs(p, spec))
    return LoopRequest(tracks, p.num_bars, p.time_signature or None, p.tempo or None,
                       derive_seed(p.seed, spec.index, attempt), p.max_tokens_per_bar)


def set_threads(num_threads: int) -> None:
    """Set torch's CPU threads (0: leave torch's default). A tiny model's matrices are too
    small to share out: on a busy CPU one thread beats two that wait for each other."""
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)


def sampling_of(p: GenerateParams) -> Sampling:
    """The sampling settings of the 04 parameters (temperature, top-k, top-p, repetition penalty)."""
    return Sampling(p.temperature, p.top_k, p.top_p, p.repetition_penalty)


# --------------------------------------------------------------------------- checks and rows
def problems(gen: Generation, request: LoopRequest, loops_per_track: list[int], check_loop: bool) -> list[str]:
    """Why a generation fails its checks (empty: it passes)."""
    found = []
    if gen.num_errors:
        found.append(f"{gen.num_errors} decoding errors")
    if len(gen.score.tracks) != len(request.tracks) or len(gen.bars_per_track) != len(request.tracks):
        found.append(f"{len(gen.score.tracks)} tracks decoded, {len(request.tracks)} requested")
    for i, bars in enumerate(gen.bars_per_track):
        if bars != request.num_bars:
            found.append(f"track {i}: {bars} bars, {request.num_bars} requested")
    for i, track in enumerate(gen.score.tracks):
        if len(track.notes) == 0:
            found.append(f"track {i}: no notes")
    if check_loop:
        found += [f"track {i}: no loop detected" for i, n in enumerate(loops_per_track) if n == 0]
    return found


def attempt_rows(p: GenerateParams, spec: GenSpec, attempt: int, request: LoopRequest, gen: Generation,
                 midi_path: str, loop_files: Sequence[str] = (), lang: Language | None = None,
                 ) -> tuple[list[dict[str, Any]], bool]:
    """One row per requested track of one attempt, and whether the attempt passed.

    :param loop_files: the files of the loops ``gen`` marks (:func:`write_loop_files`), in order.
    :param lang: the run's language (names the requested loop duration bin).
    """
    score = gen.score
    loops = detect_loops(score) if len(score.tracks) else []
    per_track = [sum(lp.track_idx == i for lp in loops) for i in range(len(score.tracks))]
    reasons = problems(gen, request, per_track, p.check_loop)
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    duration_bin = (next(iter(lang.control_values(loop_duration_beats=loop_duration_beats(p)).values()), "")
                    if lang is not None and loops_requested(p, spec.nomml) else "")
    total = max(1, sum(gen.tokens_per_track))
    marked = list(zip(gen.loops, list(loop_files) or [""] * len(gen.loops), strict=True))
    rows = []
    for i, spec_track in enumerate(request.tracks):
        track = score.tracks[i] if i < len(score.tracks) else None
        n_tokens = gen.tokens_per_track[i] if i < len(gen.tokens_per_track) else 0
        rows.append({
            "gen_id": spec.gen_id, "label": p.label, "rank": p.rank, "attempt": attempt, "seed": request.seed,
            "midi_path": midi_path, "track_idx": i, "program": spec_track.program,
            "is_drum": spec_track.program == -1, "nomml_requested": spec.nomml,
            "nomml_measured": track_nomml(track, score.ticks_per_quarter) if track is not None else "",
            "loop_count_requested": p.loop_count if loops_requested(p, spec.nomml) else NO_CONTROL,
            "n_loops_detected": per_track[i] if track is not None else "",
            "is_loop": per_track[i] > 0 if track is not None else "",
            "n_bars": gen.bars_per_track[i] if i < len(gen.bars_per_track) else "",
            "n_notes": len(track.notes) if track is not None else 0,
            "n_tokens": n_tokens, "seconds": round(gen.seconds * n_tokens / total, 4),  # the track's share
            "status": "failed" if reasons else "ok", "reason": "; ".join(reasons),
            "loop_duration_bin_requested": duration_bin,
            "time_signature": f"{ts.numerator}/{ts.denominator}" if ts is not None else "",
            "tempo": round(float(score.tempos[0].qpm), 2) if len(score.tempos) else "",
            "num_errors": gen.num_errors,
            "n_loop_markers": sum(lp.track_idx == i for lp, _ in marked),
            "n_marked_loops_repeating": sum(lp.track_idx == i and is_repeating(lp, loops, score.ticks_per_quarter)
                                            for lp, _ in marked),
            "loop_files": ";".join(path for lp, path in marked if lp.track_idx == i and path),
        })
    return rows, not reasons


# --------------------------------------------------------------------------- the run
def label_dir(p: GenerateParams) -> Path:
    """The run's folder, ``output_folder/label``: ``MIDI/``, ``RESULTS_{rank}.csv`` and ``rank_{rank}/``."""
    return Path(p.output_folder) / p.label


def run_generation(p: GenerateParams, model: PreTrainedModel, tok: Any, log: bool = True) -> pd.DataFrame:
    """Generate this rank's missing generations; return every row of its results file.

    :param p: the run's parameters.
    :param model: the model (eval mode, on its device).
    :param tok: its tokenizer (either dialect) or language.
    :param log: print one line per batch.
    """
    folder = label_dir(p)
    (folder / "MIDI").mkdir(parents=True, exist_ok=True)
    results = folder / f"RESULTS_{p.rank}.csv"
    finished = resume_results(results)
    todo = [g for g in plan_generations(nomml_levels(p.nomml), p.num_generations, p.rank, p.num_ranks)
            if g.gen_id not in finished]
    sampling = sampling_of(p)
    for start in range(0, len(todo), p.batch):
        began = time.perf_counter()
        chunk = todo[start:start + p.batch]
        rows = generate_chunk(p, model, tok, chunk, sampling, folder)
        for spec in chunk:
            mine = [r for r in rows if r["gen_id"] == spec.gen_id]
            for r in mine:
                r["gen_rows"] = len(mine)
            append_durably(results, rows_text(mine))
        if log:
            ok = len({r["gen_id"] for r in rows if r["status"] == "ok"})
            print(f"generations {start + len(chunk)}/{len(todo)}: {ok}/{len(chunk)} ok "
                  f"in {time.perf_counter() - began:.1f} s", flush=True)
    return read_results(results)


def generate_chunk(p: GenerateParams, model: PreTrainedModel, tok: Any, chunk: Sequence[GenSpec],
                   sampling: Sampling, folder: Path) -> list[dict[str, Any]]:
    """All attempts of a batch of generations (failed ones retried together); their rows."""
    lang = language_of(tok)
    rows: list[dict[str, Any]] = []
    remaining = list(chunk)
    for attempt in range(p.max_attempts):
        if not remaining:
            break
        requests = [loop_request(p, spec, attempt, lang) for spec in remaining]
        generations = generate_batch(model, lang, requests, sampling, batch_size=p.batch)
        failed = []
        for spec, request, gen in zip(remaining, requests, generations, strict=True):
            midi_path = f"MIDI/{spec.gen_id}_a{attempt}.mid"
            write_midi_atomic(gen.score, folder / midi_path)
            loop_files = write_loop_files(gen.score, gen.loops, folder, f"{spec.gen_id}_a{attempt}")
            attempt_rows_, ok = attempt_rows(p, spec, attempt, request, gen, midi_path, loop_files, lang)
            rows += attempt_rows_
            if not ok:
                failed.append(spec)
        remaining = failed
    return rows


def plot_generations(p: GenerateParams, results: pd.DataFrame, num_plots: int,
                     path: str | Path | None = None) -> plt.Figure:
    """Piano rolls of the first ``num_plots`` generations that passed, one level each when possible."""
    import matplotlib.pyplot as plt
    from symusic import Score

    from mmmlib.core.plotting import plot_piano_roll

    ok = results[results["status"] == "ok"].drop_duplicates("gen_id")
    picks = ok.drop_duplicates("nomml_requested").head(num_plots)
    picks = pd.concat([picks, ok[~ok["gen_id"].isin(picks["gen_id"])]]).head(num_plots)
    fig, axes = plt.subplots(max(1, len(picks)), 1, figsize=(10, 2.6 * max(1, len(picks))), squeeze=False)
    for ax, row in zip(axes[:, 0], picks.itertuples(), strict=False):
        score = Score(str(label_dir(p) / row.midi_path))
        level = "no NOMML control" if row.nomml_requested == NO_CONTROL else f"NOMML {row.nomml_requested}"
        plot_piano_roll(score, ax, f"{row.gen_id} ({level})")
    if picks.empty:
        axes[0, 0].text(0.5, 0.5, "no generation passed its checks", ha="center", va="center")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig
