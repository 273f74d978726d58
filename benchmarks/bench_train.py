"""Training throughput (tokens/s) and model FLOPs utilisation (MFU) of a preset.

Times full training steps (forward, backward, AdamW) on random full-length batches for
two settings measured in the same run: a baseline (fp32 weights and math, eager
attention, no compile: a plain Hugging Face model) and the requested setting (``--dtype``,
``--attn``, ``--compile``; mixed precision is autocast over fp32 weights, as accelerate
trains). The settings are timed in turn ``--repeats`` times and the median counts, so
background load on a shared machine falls on both (the load average is recorded). MFU = model FLOPs per token (:func:`mmmlib.training.flops_per_token`, PaLM
convention) x tokens/s / peak FLOPs. The peak is ``--peak-flops``, else the dense bf16
peak of a known GPU, else (CPU) an fp32 matmul measured in the same run.

Examples::

    python benchmarks/bench_train.py --preset tiny --seq-len 1024 --batch-size 8 --json
    python benchmarks/bench_train.py --device cuda --dtype bf16 --preset mistral-small \\
        --seq-len 2048 --batch-size 16 --attn sdpa --compile --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from importlib.metadata import version
from typing import Any

import torch

from mmmlib import training

# Dense bf16 tensor-core peaks (FLOP/s) by a substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A6000": 155e12,
                   "L4": 121e12, "A10": 125e12, "V100": 125e12}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(training.PRESETS))
    parser.add_argument("--seq-len", type=int, default=1024, help="tokens per sample")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per step")
    parser.add_argument("--vocab-size", type=int, default=2000, help="vocabulary (a BPE tokenizer's order)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast dtype")
    parser.add_argument("--attn", default="sdpa", choices=training.ATTN_IMPLEMENTATIONS)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile happens here)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per setting, alternating settings")
    parser.add_argument("--peak-flops", type=float, default=None, help="peak FLOP/s for MFU (overrides the table)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the fp32 eager baseline")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def measured_matmul_flops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an fp32 ``size``-cubed matmul: the CPU's practical peak."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def peak_flops(args: argparse.Namespace, device: torch.device) -> tuple[float, str]:
    """The MFU denominator and where it comes from."""
    if args.peak_flops:
        return args.peak_flops, "--peak-flops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in PEAK_BF16_FLOPS.items():
            if key in name:
                return flops, f"dense bf16 peak of {key}"
        raise SystemExit(f"no peak FLOPs known for {name!r}: pass --peak-flops")
    return measured_matmul_flops(device), "fp32 2048^3 matmul measured in this run"


def make_setting(args: argparse.Namespace, device: torch.device, dtype: str, attn: str,
                 use_compile: bool) -> tuple[Any, dict[str, Any]]:
    """A training-step function for one setting, and the setting's description."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = training.model_config(args.preset, args.vocab_size, args.seq_len, pad_token_id=0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32).to(device)
    if args.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    forward = torch.compile(model) if use_compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    ids = torch.randint(0, args.vocab_size, (args.batch_size, args.seq_len), device=device)
    autocast = torch.autocast(device.type, dtype=training.DTYPES[dtype], enabled=dtype != "fp32")

    def step() -> None:
        with autocast:
            loss = forward(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    info = {"dtype": dtype, "attn": attn, "compile": use_compile, "num_parameters": training.count_parameters(model),
            "flops_per_token": training.flops_per_token(model, args.seq_len)}
    return step, info


def timed(step: Any, num_steps: int, device: torch.device) -> float:
    """Seconds for ``num_steps`` calls of ``step`` (GPU work included)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(num_steps):
        step()
    sync()
    return time.perf_counter() - start


def measure(args: argparse.Namespace, device: torch.device, settings: dict[str, tuple]) -> dict[str, Any]:
    """Warm every setting up, then time them in turn ``--repeats`` times (the median counts).

    Alternating the settings spreads background load on a shared machine over all of them.
    """
    steps, results = {}, {}
    for name, setting in settings.items():
        steps[name], results[name] = make_setting(args, device, *setting)
        results[name]["warmup_s"] = timed(steps[name], args.warmup, device)
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.repeats):
        for name in settings:
            times[name].append(timed(steps[name], args.steps, device) / args.steps)
    for name, result in results.items():
        step_s = statistics.median(times[name])
        result.update(step_s=step_s, step_s_all=times[name],
                      tokens_per_s=args.batch_size * args.seq_len / step_s)
        result["model_flops_per_s"] = result["flops_per_token"] * result["tokens_per_s"]
    if device.type == "cuda":  # all settings share the peak: report it once
        results["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return results


def device_info(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "count": torch.cuda.device_count()}
    cpu_name = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu_name = names[0] if names else cpu_name
    return {"type": "cpu", "name": cpu_name, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "load_average_1min": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = training.resolve_device(args.device)
    training.check_attn_implementation(args.attn, device)
    peak, peak_source = peak_flops(args, device)
    settings = {} if args.no_baseline else {"baseline": ("fp32", "eager", False)}
    settings["optimised"] = (args.dtype, args.attn, args.compile)
    results = measure(args, device, settings)
    for name in settings:
        results[name]["mfu"] = results[name]["model_flops_per_s"] / peak
    report = {
        "benchmark": "bench_train",
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "device": device_info(device),
        "versions": {name: version(name) for name in ("torch", "transformers", "accelerate")}
        | {"python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "peak_flops": peak, "peak_flops_source": peak_source, "results": results,
    }
    if "baseline" in results:
        report["speedup_vs_baseline"] = results["optimised"]["tokens_per_s"] / results["baseline"]["tokens_per_s"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in settings:
            r = results[name]
            print(f"{name:>9}: {r['dtype']} {r['attn']}{' compiled' if r['compile'] else ''}: "
                  f"{r['tokens_per_s']:,.0f} tokens/s, MFU {r['mfu']:.1%} ({peak_source})")
    return report


if __name__ == "__main__":
    main()
