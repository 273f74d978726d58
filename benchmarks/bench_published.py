"""Encoding speed of the published tokenizer (``mmmlib.tokens.published``) against plain ``miditok.MMM``.

Compared on every file of a corpus (scores parsed beforehand, in one process):

- ``mmm_plain``: upstream ``miditok.MMM`` with its default configuration (REMI inside
  tracks), no controls, no BPE: the baseline the reference was measured against;
- ``published``: :meth:`PublishedTokenizer.encode`, no controls, REAPER preprocessing,
  microtiming and BPE: what the reference did at 2.9 files/s on this machine;
- ``published_track_loops``: every track control with loops given (as the golden files);
- ``published_track``: the same with loop detection (:func:`mmmlib.data.loops.detect_loops`)
  included, as ``mmmlib encode --controls track`` does;
- ``published_samples``: 02's sample step on the file (:func:`mmmlib.tokens.published_samples.file_samples`,
  2048-id samples: chunks cut, each encoded on its own with its controls and loops, ids and masks).

Each file is encoded by every candidate in turn, ``--repeats`` times, and keeps its fastest
time (the machine is shared). ``ids`` counts the ids each candidate returns (BPE ids for
ours, base ids for MMM).

    python benchmarks/bench_published.py --tokenizer ../shared/published/MMM_epl_mistral_tokenizer_with_acs.json
    python benchmarks/bench_published.py --tokenizer ... --json --out benchmarks/results/bench_published.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from miditok import MMM, TokenizerConfig
from symusic import Score

from mmmlib.data.loops import detect_loops
from mmmlib.tokens.published import load_published
from mmmlib.tokens.published_samples import file_samples
from mmmlib.tokens.samples import SampleOptions

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "gigamidi-tests"
DEFAULT_TOKENIZER = REPO.parent / "shared" / "published" / "MMM_epl_mistral_tokenizer_with_acs.json"
# The reference (the MidiTok fork) on this project's 2-core machine, same 30 files, one run
# (../shared/published/README.md): 27 files encoded, 3 raised.
REFERENCE = {"files_per_s": 2.9, "ids_per_s": 62_000}


def _candidates(tok, mmm: MMM) -> dict:
    return {
        "mmm_plain": lambda score, loops: mmm.encode(score).ids,
        "published": lambda score, loops: tok.encode(score),
        "published_track_loops": lambda score, loops: tok.encode(score, controls="track", loops=loops),
        "published_track": lambda score, loops: tok.encode(score, controls="track"),
        # 02's sample step per file: every chunk of 2048 ids encoded on its own, controls drawn, ids
        # and loss masks built (ids: the samples' ids; a file is cut into several samples)
        "published_samples": lambda score, loops: [i for s in file_samples(
            tok, score, [{"track_idx": lp.track_idx, "start_tick": lp.start_tick, "end_tick": lp.end_tick}
                         for lp in loops], np.random.default_rng(0), SampleOptions())[0] for i in s.input_ids],
    }


def run(files: list[Path], tokenizer: Path, repeats: int) -> dict:
    """Time every candidate on every file.

    :param files: MIDI files.
    :param tokenizer: the published tokenizer JSON file.
    :param repeats: encodings per file and candidate (the fastest is kept).
    :return: per candidate: files, seconds, ids, files/s, ids/s, failures.
    """
    t0 = time.perf_counter()
    tok = load_published(tokenizer)
    load_s = time.perf_counter() - t0
    mmm = MMM(TokenizerConfig(base_tokenizer="REMI"))
    scores = [(path, Score(str(path))) for path in files]
    loops = {path: detect_loops(score) for path, score in scores}
    results = {}
    for name, fn in _candidates(tok, mmm).items():
        seconds, ids, failures = 0.0, 0, []
        for path, score in scores:
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                try:
                    out = fn(score, loops[path])
                except Exception as exc:  # the baseline may refuse a file; count it, go on
                    failures.append(f"{path.name}: {type(exc).__name__}")
                    break
                best = min(best, time.perf_counter() - start)
            else:
                seconds += best
                ids += len(out)
        done = len(scores) - len(failures)
        results[name] = {
            "files": done,
            "seconds": round(seconds, 4),
            "ids": ids,
            "files_per_s": round(done / seconds, 2) if seconds else None,
            "ids_per_s": round(ids / seconds) if seconds else None,
            "failures": failures,
        }
    return {"tokenizer_load_s": round(load_s, 3), "candidates": results}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (or one JSON object with ``--json``).

    :param argv: arguments.
    :return: exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder of MIDI files")
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER, help="published tokenizer JSON")
    parser.add_argument("--repeats", type=int, default=3, help="encodings per file (fastest kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON object here")
    args = parser.parse_args(argv)
    files = sorted(p for p in args.corpus.glob("*.mid*") if p.is_file())
    if not files or not args.tokenizer.is_file():
        print(f"need MIDI files in {args.corpus} and the tokenizer {args.tokenizer}", file=sys.stderr)
        return 2
    result = run(files, args.tokenizer, args.repeats)
    ours = result["candidates"]["published"]
    result |= {
        "corpus": args.corpus.name,  # a label, not a machine path
        "num_files": len(files),
        "reference": REFERENCE,
        "speedup_vs_reference": round(ours["files_per_s"] / REFERENCE["files_per_s"], 1),
        "device": {
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "system": platform.system(),
        },
        "versions": {
            "python": platform.python_version(),
            **{pkg: version(pkg) for pkg in ("miditok", "symusic", "tokenizers", "numpy")},
        },
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{len(files)} files from {args.corpus}, fastest of {args.repeats}; tokenizer load {result['tokenizer_load_s']} s"
    )
    print(f"{'candidate':24} {'files':>5} {'seconds':>8} {'files/s':>8} {'ids':>9} {'ids/s':>9}  failures")
    for name, row in result["candidates"].items():
        print(
            f"{name:24} {row['files']:5d} {row['seconds']:8.3f} {row['files_per_s']:8.2f} {row['ids']:9d}"
            f" {row['ids_per_s']:9d}  {len(row['failures'])}"
        )
    print(
        f"{'reference (README)':24} {27:5d} {'':8} {REFERENCE['files_per_s']:8.2f} {'':9} {REFERENCE['ids_per_s']:9d}"
    )
    print(f"published vs reference: {result['speedup_vs_reference']}x files/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
