"""Benchmark mmmlib.data.loops against the literal O(n^2) oracle (tests/loops_oracle.py).

For every MIDI file of a folder, times the whole detection from a loaded score (bars and
beats from miditok, note sets, candidates, filtering) with both implementations, checks
that they return the same loops, and prints one row per file then the totals::

    python benchmarks/bench_loops.py ../shared/corpora/gigamidi-tests
    python benchmarks/bench_loops.py FOLDER --json   # one JSON object: totals + environment

Without a folder, a synthetic corpus is written with ``mmmlib.data.write_corpus``.
File loading is not timed (the same for both). The fast code is warmed up once first.
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
from pathlib import Path

from symusic import Score

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for tests.loops_oracle and an uninstalled mmmlib

from mmmlib.data import LoopOptions, detect_loops, write_corpus  # noqa: E402
from tests.loops_oracle import detect_loops as oracle_detect_loops  # noqa: E402


def timed(func, score: Score, repeats: int, **options) -> tuple[float, list]:
    """Best wall time of ``repeats`` calls of ``func(score, **options)`` and its result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func(score, **options)
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_file(path: Path, fast_repeats: int, **options) -> dict:
    """Time both detectors on one file; ``error`` is set when it cannot be read."""
    try:
        score = Score(path)
    except Exception as exc:  # unreadable: reported, not timed
        return {"file": path.name, "error": str(exc)}
    fast_s, fast = timed(detect_loops, score, fast_repeats, **options)
    oracle_s, oracle = timed(oracle_detect_loops, score, 1, **options)
    return {"file": path.name, "num_notes": sum(len(t.notes) for t in score.tracks),
            "fast_s": fast_s, "oracle_s": oracle_s, "ratio": oracle_s / fast_s,
            "num_loops": len(fast), "equal": fast == oracle}


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo when there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    return {"cpu": cpu_name(), "num_cpus": os.cpu_count(),
            "device": "cpu", "platform": platform.platform(), "python": platform.python_version(),
            "numpy": version("numpy"), "symusic": version("symusic"), "miditok": version("miditok"),
            "command": " ".join([Path(sys.executable).name, *sys.argv])}


def corpus_files(folder: str | None, num_synth: int) -> tuple[list[Path], str]:
    """The MIDI files to run on, and a label; writes a synthetic corpus without a folder."""
    if folder:
        return sorted(Path(folder).glob("*.mid")), Path(folder).name  # a label, not a machine path
    out = Path(tempfile.mkdtemp(prefix="bench_loops_"))
    write_corpus(out, num_files=num_synth, seed=0)
    return sorted(out.glob("*.mid")), f"synthetic ({num_synth} files, seed 0)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="folder of .mid files (default: a synthetic corpus)")
    parser.add_argument("--num-synth", type=int, default=20, help="files in the synthetic corpus")
    parser.add_argument("--fast-repeats", type=int, default=5, help="best-of runs for the fast code")
    parser.add_argument("--duration-offset", type=int, default=LoopOptions.duration_offset,
                        help="get_duration_beats convention passed to both detectors (-1 or 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the totals")
    parser.add_argument("--save", metavar="NAME",
                        help="also write the table and the JSON to benchmarks/results/bench_loops_NAME.{txt,json}")
    args = parser.parse_args(argv)
    files, label = corpus_files(args.folder, args.num_synth)
    if files:
        timed(detect_loops, Score(files[0]), 1)  # warm-up: imports, first-call allocations
    rows, lines = [], []
    for path in files:
        rows.append(bench_file(path, args.fast_repeats, duration_offset=args.duration_offset))
        lines.append(format_row(rows[-1]))
        if not args.json:
            print(lines[-1], flush=True)
    timed_rows = [r for r in rows if "error" not in r]
    totals = {"corpus": label, "duration_offset": args.duration_offset,
              "num_files": len(rows), "num_unreadable": len(rows) - len(timed_rows),
              "num_loops": sum(r["num_loops"] for r in timed_rows),
              "num_files_equal": sum(r["equal"] for r in timed_rows),
              "all_equal": all(r["equal"] for r in timed_rows),
              "fast_total_s": sum(r["fast_s"] for r in timed_rows),
              "oracle_total_s": sum(r["oracle_s"] for r in timed_rows)}
    totals["speedup"] = totals["oracle_total_s"] / max(totals["fast_total_s"], 1e-12)
    report = json.dumps({**totals, **environment(), "files": rows}, indent=2)
    lines.append(f"TOTAL {totals['num_files']} files, {totals['num_loops']} loops, "
                 f"{totals['num_files_equal']}/{len(timed_rows)} equal: fast {totals['fast_total_s']:.3f} s, "
                 f"oracle {totals['oracle_total_s']:.1f} s, speedup {totals['speedup']:.0f}x")
    print(report if args.json else lines[-1])
    if args.save:
        save_results(args.save, lines, report)
    return 0 if totals["all_equal"] else 1


def save_results(name: str, lines: list[str], report: str) -> None:
    """Write the table (with a header naming command, machine, versions) and the JSON report."""
    env = environment()
    header = [f"# {env['command']}", f"# {env['cpu']} x{env['num_cpus']}, {env['platform']}, python "
              f"{env['python']}, numpy {env['numpy']}, symusic {env['symusic']}, miditok {env['miditok']}"]
    results = REPO_ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"bench_loops_{name}.txt").write_text("\n".join(header + lines) + "\n")
    (results / f"bench_loops_{name}.json").write_text(report + "\n")


def format_row(row: dict) -> str:
    if "error" in row:
        return f"{row['file'][:40]:40s} unreadable: {row['error']}"
    return (f"{row['file'][:40]:40s} notes {row['num_notes']:6d}  fast {row['fast_s'] * 1e3:8.2f} ms  "
            f"oracle {row['oracle_s']:8.2f} s  ratio {row['ratio']:8.0f}x  loops {row['num_loops']:3d}  "
            f"equal {row['equal']}")


if __name__ == "__main__":
    sys.exit(main())
