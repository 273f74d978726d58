"""Generation throughput: one request at a time vs batched, and the price of the grammar constraint.

Measured in the same run, on the same model and loop requests (``--tracks`` tracks of
``--bars`` bars, ``--tokens-per-bar`` budget per bar):

- *sequential*: plain ``model.generate`` (HF sampling, top-k 20, top-p 0.95), one request
  at a time, no constraint, as many new tokens as a constrained loop takes on average;
- *unconstrained batch*: the same ``model.generate`` on ``B`` left-padded prompts;
- *batch*: :func:`mmmlib.generation.engine.generate_batch` (grammar constraint, per-row seeded
  sampling) at ``B`` = each of ``--batch-sizes``, with the share of loops that decode to the
  requested bars and tracks without error (``valid_fraction``).

Settings are timed in turn ``--repeats`` times and the median counts, so background load
on a shared machine falls on all of them (``--statistic best``: the fastest round of each
setting counts instead, for a machine whose load comes and goes: load only ever slows a round). Tokens are generated ids (prompts excluded);
loops/s = requests / time; the constrained timings are end to end (requests, prompts,
decoding into scores included).

A batch decodes until its longest row ends, so its rows take as many *steps* as the
longest; plain ``model.generate`` is given a fixed length, so its steps are all tokens.
``constraint_cost`` compares steps per second (what the grammar constraint and the seeded
sampling cost per decoding step); ``constraint_cost_useful_tokens`` compares useful tokens
per second (that cost plus the steps rows spend waiting for longer rows, ``padding_waste``). The model is random (``--preset``) unless ``--model-dir`` is
given: a random model never stops early, so the constrained loops end by their budget.

``--tokenizer`` takes a tokenizer of either dialect: with the published MIDI-GPT-Loop JSON and
``--preset mistral-small --max-positions 8192`` the random model has the published
configuration (41.6M parameters), and requests ask NOMML in its language
(``ACMedianMetricLevel``).

Examples::

    python benchmarks/bench_generate.py --json --save cpu_tiny
    python benchmarks/bench_generate.py --tokenizer ../shared/published/MMM_epl_mistral_tokenizer_with_acs.json \
        --preset mistral-small --max-positions 8192 --threads 2 --json --save cpu_published
    python benchmarks/bench_generate.py --device cuda --preset mistral-small --dtype bf16 \\
        --cache static --warmup-rounds 1 --batch-sizes 1 16 64 256 --json --save cuda_mistral-small
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig

from mmmlib.generation import LoopRequest, Sampling, TrackSpec, generate_batch, language_of
from mmmlib.generation.sampling import left_pad
from mmmlib.tokens.loading import load_any_tokenizer
from mmmlib.tokens.tokenizer import build_tokenizer, save_tokenizer
from mmmlib.training import model as mmm_model

RESULTS = Path(__file__).resolve().parent / "results"
PROGRAMS = (0, -1, 33, 48, 25, 81)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(mmm_model.PRESETS))
    parser.add_argument("--model-dir", default=None, help="a trained model folder instead of a random preset")
    parser.add_argument("--tokenizer", default=None, help="tokenizer file of either dialect, e.g. the published "
                        "MMM_epl_mistral_tokenizer_with_acs.json (default: BPE on a synthetic corpus)")
    parser.add_argument("--max-positions", type=int, default=2048, help="positions of the random model")
    parser.add_argument("--vocab-size", type=int, default=1000, help="BPE vocabulary of the default tokenizer")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", default="fp32", choices=sorted(mmm_model.DTYPES))
    parser.add_argument("--cache", default=None, help="transformers cache_implementation (e.g. static)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--sequential-requests", type=int, default=8, help="requests of the one-at-a-time runs")
    parser.add_argument("--tracks", type=int, default=2)
    parser.add_argument("--bars", type=int, default=4)
    parser.add_argument("--tokens-per-bar", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--statistic", default="median", choices=("median", "best"),
                        help="which round of each setting counts (best: the fastest, on a busy shared machine)")
    parser.add_argument("--warmup-rounds", type=int, default=0,
                        help="untimed rounds of every setting first (static cache / compile: one per batch shape)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--save", default=None, help="write results/bench_generate_<SAVE>.json")
    return parser.parse_args(argv)


def default_tokenizer(folder: Path, vocab_size: int) -> Path:
    """A BPE tokenizer trained on a small synthetic corpus (the demo's kind of vocabulary)."""
    from symusic import Score

    from mmmlib.data.synth import write_corpus

    write_corpus(folder / "midi", num_files=12, seed=0)
    tok = build_tokenizer(expressive=True)
    words = [w for path in sorted((folder / "midi").glob("*.mid"))
             for t in tok.encode_score(Score(str(path)), bar_controls=False) for w in tok.words(t.tokens())]
    tok.train_bpe(vocab_size, words)
    return save_tokenizer(tok, folder / "tokenizer.json")


def load_model(args: argparse.Namespace, workdir: Path):
    """``(model, tokenizer)``: the trained folder, or a random preset on the tokenizer."""
    if args.model_dir:
        return mmm_model.load(args.model_dir, args.tokenizer, device=args.device, dtype=args.dtype)
    tok = load_any_tokenizer(args.tokenizer or default_tokenizer(workdir, args.vocab_size))
    torch.manual_seed(0)
    model = mmm_model.build_model(args.preset, tok, max_seq_len=args.max_positions)
    return model.to(device=args.device, dtype=mmm_model.DTYPES[args.dtype]).eval(), tok


def requests(args: argparse.Namespace, count: int, offset: int = 0) -> list[LoopRequest]:
    lang = args.language
    return [LoopRequest(tuple(TrackSpec(PROGRAMS[(i + k) % len(PROGRAMS)], lang.control_values(nomml=(i + k) % 13))
                              for k in range(args.tracks)),
                        num_bars=args.bars, time_signature="4/4", seed=offset + i,
                        max_tokens_per_bar=args.tokens_per_bar) for i in range(count)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_constrained(model, tok, reqs: list[LoopRequest], batch: int, args) -> dict[str, float]:
    """generate_batch on ``reqs``: tokens/s, loops/s, valid share, mean tokens per loop."""
    sync(model.device)
    start = time.perf_counter()
    gens = generate_batch(model, tok, reqs, Sampling(), batch_size=batch, cache_implementation=args.cache)
    sync(model.device)
    seconds = time.perf_counter() - start
    valid = [g.num_errors == 0 and g.bars_per_track == [r.num_bars] * len(r.tracks)
             and len(g.score.tracks) == len(r.tracks) and all(len(t.notes) for t in g.score.tracks)
             for g, r in zip(gens, reqs, strict=True)]
    tokens = sum(g.num_tokens for g in gens)
    return {"tokens_per_s": tokens / seconds, "row_steps_per_s": sum(g.num_steps for g in gens) / seconds,
            "loops_per_s": len(reqs) / seconds, "valid_fraction": sum(valid) / len(valid),
            "tokens_per_loop": tokens / len(reqs)}


def timed_plain(model, tok, reqs: list[LoopRequest], batch: int, new_tokens: int, args) -> dict[str, float]:
    """Plain ``model.generate`` (HF sampling, no constraint) of exactly ``new_tokens`` per row."""
    config = GenerationConfig(do_sample=True, top_k=20, top_p=0.95, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, pad_token_id=tok.pad_token_id,
                              cache_implementation=args.cache)
    lang = language_of(tok)
    prompts = [lang.tokens_to_ids(lang.track_header(r.tracks[0].program, r.tracks[0].controls)) for r in reqs]
    sync(model.device)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            ids, mask = left_pad(prompts[i:i + batch], tok.pad_token_id, model.device)
            model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    sync(model.device)
    seconds = time.perf_counter() - start
    return {"tokens_per_s": len(prompts) * new_tokens / seconds, "loops_per_s": len(prompts) / seconds}


def measure(args: argparse.Namespace, model, tok) -> dict[str, Any]:
    """Median of ``--repeats`` rounds of every setting, after ``--warmup-rounds`` untimed ones.

    A first small constrained run (untimed) gives the tokens of a loop, which the plain
    ``model.generate`` runs then produce exactly.
    """
    sizes = args.batch_sizes
    warm = timed_constrained(model, tok, requests(args, min(sizes[-1], 4)), min(sizes[-1], 4), args)
    new_tokens = round(warm["tokens_per_loop"])
    timed_plain(model, tok, requests(args, 2), 2, 8, args)
    runs: dict[str, list[dict[str, float]]] = {}
    for repeat in range(-args.warmup_rounds, args.repeats):
        runs.setdefault("sequential", []).append(
            timed_plain(model, tok, requests(args, args.sequential_requests), 1, new_tokens, args))
        for batch in sizes:
            reqs = requests(args, args.sequential_requests if batch == 1 else batch, 1000 * (repeat + 10))
            runs.setdefault(f"batch_{batch}", []).append(timed_constrained(model, tok, reqs, batch, args))
            if batch > 1:
                runs.setdefault(f"plain_{batch}", []).append(timed_plain(model, tok, reqs, batch, new_tokens, args))
    runs = {name: rows[args.warmup_rounds:] for name, rows in runs.items()}  # drop the warm-up rounds
    if args.statistic == "median":
        median = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in runs.items()}
    else:  # the fastest round of each setting, whole
        median = {name: dict(max(rows, key=lambda r: r["tokens_per_s"])) for name, rows in runs.items()}
    for name, rows in runs.items():  # validity: the worst round, whatever the statistic
        if "valid_fraction" in rows[0]:
            median[name]["valid_fraction"] = min(r["valid_fraction"] for r in rows)
    return {"median": median, "tokens_per_loop": new_tokens, "runs": runs}


def summary(args: argparse.Namespace, model, tok, measured: dict[str, Any]) -> dict[str, Any]:
    med, sizes = measured["median"], args.batch_sizes
    seq = med["sequential"]["tokens_per_s"]
    batch_tps = {str(b): round(med[f"batch_{b}"]["tokens_per_s"], 1) for b in sizes}
    plain_tps = {str(b): round(med[f"plain_{b}"]["tokens_per_s"], 1) for b in sizes if b > 1}
    return {
        "device": str(model.device) if model.device.type == "cpu" else torch.cuda.get_device_name(model.device),
        "batch": sizes,
        "sequential_tokens_per_s": round(seq, 1),
        "unconstrained_batch_tokens_per_s": plain_tps,
        "batch_tokens_per_s": batch_tps,
        "valid_fraction": min(med[f"batch_{b}"]["valid_fraction"] for b in sizes),
        "sequential_loops_per_s": round(med["sequential"]["loops_per_s"], 3),
        "batch_loops_per_s": {str(b): round(med[f"batch_{b}"]["loops_per_s"], 3) for b in sizes},
        "speedup_vs_sequential": {str(b): round(med[f"batch_{b}"]["tokens_per_s"] / seq, 2) for b in sizes},
        "batch_row_steps_per_s": {str(b): round(med[f"batch_{b}"]["row_steps_per_s"], 1) for b in sizes},
        "constraint_cost": {str(b): round(1 - med[f"batch_{b}"]["row_steps_per_s"] / plain_tps[str(b)], 3)
                            for b in sizes if b > 1},
        "constraint_cost_useful_tokens": {str(b): round(1 - batch_tps[str(b)] / plain_tps[str(b)], 3)
                                          for b in sizes if b > 1},
        "padding_waste": {str(b): round(1 - med[f"batch_{b}"]["tokens_per_s"] / med[f"batch_{b}"]["row_steps_per_s"], 3)
                          for b in sizes},
        "tokens_per_loop": measured["tokens_per_loop"],
        "settings": {k: (Path(v).name if k in ("tokenizer", "model_dir") and v else v)  # no machine paths
                     for k, v in vars(args).items() if k not in ("json", "save", "language")},
        "dialect": language_of(tok).name,
        "parameters": mmm_model.count_parameters(model), "vocab_size": len(tok),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
        "versions": {name: version(name) for name in ("torch", "transformers", "miditok", "symusic")},
        "python": platform.python_version(), "platform": platform.platform(),
        "command": "python benchmarks/bench_generate.py " + shlex.join(
            Path(a).name if os.path.isabs(a) else a for a in sys.argv[1:]),
        "runs": measured["runs"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        model, tok = load_model(args, Path(workdir))
        args.language = language_of(tok)
        result = summary(args, model, tok, measure(args, model, tok))
    if args.save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"bench_generate_{args.save}.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    else:
        for key in ("device", "sequential_tokens_per_s", "batch_tokens_per_s", "unconstrained_batch_tokens_per_s",
                    "speedup_vs_sequential", "constraint_cost", "constraint_cost_useful_tokens", "padding_waste",
                    "valid_fraction"):
            print(f"{key:>34}: {result[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
