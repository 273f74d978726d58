"""Encoding speed of our tokenizer against plain ``miditok.MMM`` on the same files.

Compared, on every file of a corpus (scores parsed beforehand, loops detected beforehand
as data prep would):

- ``plain``: ``miditok.MMM`` with the same base configuration (REMI inside tracks,
  32 velocities, tempos, time signatures) and no attribute control;
- ``ours``: :meth:`MMMLoop.encode_score` non-expressive, every control on (MidiTok's
  track and bar controls, NOMML, loops), bar controls on every bar;
- ``plain127`` / ``ours_expressive``: the same with 127 velocities, ours adding microtiming;
- ``plain_core``: MidiTok's preprocessing + ``_score_to_tokens`` only, i.e. ``plain``
  without ``encode``'s final pass that stores bar and beat ticks in each sequence (which
  ours does not need): the strictest baseline.

Single process: each file is encoded by every candidate in turn, ``--repeats`` times,
and each file keeps its fastest time (the machine is shared: the minimum is the least
disturbed run). With workers: wall time of a ``Pool(workers).map`` over the files.

    python benchmarks/bench_tokenize.py --corpus ../shared/corpora/gigamidi-tests --json
    python benchmarks/bench_tokenize.py --synthetic 100 --workers 2 --json --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from miditok import MMM
from symusic import Score

from mmmlib.data.loops import detect_loops
from mmmlib.tokens import ControlSwitches, build_tokenizer, tokenizer_config

NO_CONTROLS = ControlSwitches(**{name: False for name in ControlSwitches.__dataclass_fields__})


def candidates() -> dict:
    """name -> (encode function, token counter) for every compared encoder."""
    plain = MMM(tokenizer_config(expressive=False, controls=NO_CONTROLS))
    plain127 = MMM(tokenizer_config(expressive=True, controls=NO_CONTROLS))
    ours = build_tokenizer(expressive=False)
    ours_expressive = build_tokenizer(expressive=True)
    return {
        "plain": lambda score, loops: len(plain.encode(score).tokens),
        "ours": lambda score, loops: num_tokens(ours.encode_score(score, loops)),
        "plain127": lambda score, loops: len(plain127.encode(score).tokens),
        "ours_expressive": lambda score, loops: num_tokens(ours_expressive.encode_score(score, loops)),
        "plain_core": lambda score, loops: sum(len(s.tokens) for s in plain._score_to_tokens(plain.preprocess_score(score))),
    }


def num_tokens(tracks) -> int:
    """Tokens of encoded tracks, counted without building the flat list."""
    return sum(len(t.header) + sum(len(bar) for bar in t.bars) + 1 for t in tracks)


def loops_of(score: Score) -> dict[int, list]:
    """Loops per track, as data prep would give them."""
    out: dict[int, list] = {}
    for lp in detect_loops(score):
        out.setdefault(lp.track_idx, []).append((lp.start_tick, lp.end_tick, lp.duration_beats))
    return out


def single_process(scores: list[Score], loops: list[dict], repeats: int) -> dict[str, dict]:
    """Fastest time of each file per candidate, summed; tokens produced."""
    encoders = candidates()
    best = {name: np.full(len(scores), np.inf) for name in encoders}
    tokens = dict.fromkeys(encoders, 0)
    for rep in range(repeats):
        for i, (score, file_loops) in enumerate(zip(scores, loops, strict=True)):
            for name, encode in encoders.items():
                began = time.perf_counter()
                count = encode(score, file_loops)
                best[name][i] = min(best[name][i], time.perf_counter() - began)
                if rep == 0:
                    tokens[name] += count
    return {name: {"seconds": float(best[name].sum()), "files_per_s": len(scores) / float(best[name].sum()),
                   "tokens": tokens[name], "tokens_per_s": tokens[name] / float(best[name].sum())}
            for name in encoders}


_POOL: dict = {}


def _init() -> None:
    _POOL.update(candidates())


def _encode_file(task: tuple[str, str, dict]) -> int:
    name, path, file_loops = task
    return _POOL[name](Score(path), file_loops)


def with_workers(paths: list[str], loops: list[dict], workers: int, repeats: int) -> dict[str, dict]:
    """Wall time of encoding every file (parsing included) in a pool, fastest of ``repeats``."""
    out = {}
    with Pool(workers, initializer=_init) as pool:
        for name in ("plain", "ours", "plain127", "ours_expressive", "plain_core"):
            tasks = [(name, p, lp) for p, lp in zip(paths, loops, strict=True)]
            best, tokens = np.inf, 0
            for _ in range(repeats):
                began = time.perf_counter()
                tokens = sum(pool.map(_encode_file, tasks, chunksize=2))
                best = min(best, time.perf_counter() - began)
            out[name] = {"seconds": best, "files_per_s": len(paths) / best, "tokens": tokens,
                         "tokens_per_s": tokens / best}
    return out


def overheads(results: dict[str, dict]) -> dict[str, float]:
    """Time of ours relative to plain MidiTok (1.30 = 30 % more)."""
    return {"ours_vs_plain": results["ours"]["seconds"] / results["plain"]["seconds"],
            "ours_vs_plain_core": results["ours"]["seconds"] / results["plain_core"]["seconds"],
            "ours_expressive_vs_plain127": results["ours_expressive"]["seconds"] / results["plain127"]["seconds"]}


def corpus_files(args: argparse.Namespace) -> tuple[list[str], str]:
    if args.corpus:
        paths = sorted(str(p) for p in Path(args.corpus).rglob("*.mid"))
        return paths, Path(args.corpus).name  # a label, not a machine path
    from mmmlib.data.synth import write_corpus

    folder = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    write_corpus(folder, num_files=args.synthetic, seed=0)
    return sorted(str(p) for p in folder.glob("*.mid")), f"synthetic ({args.synthetic} files, seed 0)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="folder of MIDI files")
    source.add_argument("--synthetic", type=int, help="number of synthetic files to generate")
    parser.add_argument("--repeats", type=int, default=5, help="runs per file; the fastest counts")
    parser.add_argument("--workers", type=int, default=2, help="processes of the pool run (0: skip it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", help="also write the JSON object to this file")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    paths, corpus = corpus_files(args)
    scores, loops, readable = [], [], []
    for path in paths:
        try:
            score = Score(path)
        except Exception:  # unreadable files are not what we measure
            continue
        if sum(len(t.notes) for t in score.tracks) == 0:
            continue
        scores.append(score)
        loops.append(loops_of(score))
        readable.append(path)
    single = single_process(scores, loops, args.repeats)
    pooled = with_workers(readable, loops, args.workers, args.repeats) if args.workers else {}
    result = {
        "benchmark": "bench_tokenize", "corpus": corpus, "files": len(scores),
        "notes": int(sum(len(t.notes) for s in scores for t in s.tracks)),
        "single_process": single, "single_process_overhead": overheads(single),
        f"workers_{args.workers}": pooled, f"workers_{args.workers}_overhead": overheads(pooled) if pooled else {},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                   "cpu_count": os.cpu_count(), "system": platform.system(),
                   "load_average_1min_before_after": [load_before, os.getloadavg()[0]]},
        "versions": {"python": platform.python_version(),
                     **{pkg: version(pkg) for pkg in ("miditok", "symusic", "numpy", "tokenizers")}},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
    else:
        for name, row in single.items():
            print(f"{name:16s} {row['files_per_s']:8.1f} files/s {row['tokens_per_s']:10.0f} tokens/s")
        print({k: round(v, 3) for k, v in result["single_process_overhead"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
