"""Benchmark mmmlib.data.loops (or, with --expressive, mmmlib.data.expressive) against its literal oracle.

For every MIDI file of a folder, times the whole detection from a loaded score (bars and
beats from miditok, note sets, candidates, filtering) with both implementations, checks
that they return the same loops, and prints one row per file then the totals::

    python benchmarks/bench_loops.py ../shared/corpora/gigamidi-tests
    python benchmarks/bench_loops.py FOLDER --json   # one JSON object: totals + environment
    python benchmarks/bench_loops.py FOLDER --expressive --oracle-timeout 600 --save NAME

With ``--expressive`` the oracle is tests/expressive_oracle.py (the GigaMIDI v1.1 notebook,
literally) against ``reference`` mode, loopability of every track included; the oracle
runs in a child process, stopped after ``--oracle-timeout`` seconds per file (the rows say
which files it finished; speed-ups are over those). ``default`` mode is timed too.

Without a folder, a synthetic corpus is written with ``mmmlib.data.write_corpus``.
File loading is not timed (the same for both). The fast code is warmed up once first.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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

from mmmlib.data import LoopOptions, analyse_expressive_tracks, detect_loops, write_corpus  # noqa: E402
from tests import expressive_oracle  # noqa: E402
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


def cpu_timed(func, score: Score, repeats: int, **options) -> tuple[float, float, list]:
    """Best CPU time and best wall time of ``repeats`` calls, and the result.

    The expressive run compares CPU (process) times: on a shared machine the wall time of
    the fast side, tens of milliseconds, moves by 2x with the load of other processes.
    """
    best_cpu, best_wall, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        result = func(score, **options)
        best_cpu, best_wall = min(best_cpu, time.process_time() - cpu), min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall, result


def _oracle_child(path: str, connection) -> None:
    """Child process: run the expressive oracle on one file, send (cpu s, wall s, result) back."""
    connection.send(cpu_timed(expressive_oracle.analyse, Score(path), 1))


def timed_oracle(path: Path, timeout_s: float) -> tuple[float | None, float | None, list | None]:
    """The expressive oracle's CPU and wall time and result on one file, or Nones past ``timeout_s`` (wall)."""
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_oracle_child, args=(str(path), sender))
    child.start()
    ready = receiver.poll(timeout_s)
    outcome = receiver.recv() if ready else (None, None, None)
    if child.is_alive():
        child.terminate()
    child.join()
    return outcome


def bench_expressive_file(path: Path, fast_repeats: int, oracle_timeout_s: float) -> dict:
    """Time reference mode, default mode and (in a child, with a timeout) the oracle on one file."""
    try:
        score = Score(path)
    except Exception as exc:  # unreadable: reported, not timed
        return {"file": path.name, "error": str(exc)}
    fast_s, fast_wall_s, fast = cpu_timed(analyse_expressive_tracks, score, fast_repeats, mode="reference")
    default_s, _, default = cpu_timed(analyse_expressive_tracks, score, fast_repeats, mode="default")
    oracle_s, oracle_wall_s, oracle = timed_oracle(path, oracle_timeout_s)
    return {"file": path.name, "num_notes": sum(len(t.notes) for t in score.tracks),
            "num_tracks": len(score.tracks), "fast_s": fast_s, "fast_wall_s": fast_wall_s, "default_s": default_s,
            "oracle_finished": oracle is not None, "oracle_s": oracle_s, "oracle_wall_s": oracle_wall_s,
            "ratio": oracle_s / fast_s if oracle is not None else None,
            "num_loops": sum(len(t.loops) for t in fast), "num_default_loops": sum(len(t.loops) for t in default),
            "equal": fast == oracle if oracle is not None else None}


def expressive_totals(rows: list[dict], label: str, timeout_s: float) -> dict:
    """Totals of an expressive run: speed-up over the files the oracle finished, which ones it did not."""
    timed_rows = [r for r in rows if "error" not in r]
    finished = [r for r in timed_rows if r["oracle_finished"]]
    ratios = sorted(r["ratio"] for r in finished)
    totals = {"corpus": label, "detector": "expressive, reference mode (oracle: tests/expressive_oracle.py)",
              "oracle_timeout_s": timeout_s, "num_files": len(rows), "num_unreadable": len(rows) - len(timed_rows),
              "num_oracle_finished": len(finished),
              "oracle_unfinished": [r["file"] for r in timed_rows if not r["oracle_finished"]],
              "num_files_equal": sum(bool(r["equal"]) for r in finished),
              "all_finished_equal": all(r["equal"] for r in finished),
              "num_loops": sum(r["num_loops"] for r in timed_rows),
              "num_default_loops": sum(r["num_default_loops"] for r in timed_rows),
              "fast_total_s": sum(r["fast_s"] for r in timed_rows),
              "default_total_s": sum(r["default_s"] for r in timed_rows),
              "fast_total_s_finished": sum(r["fast_s"] for r in finished),
              "oracle_total_s_finished": sum(r["oracle_s"] for r in finished),
              "ratio_min": ratios[0] if ratios else None,
              "ratio_median": ratios[len(ratios) // 2] if ratios else None,
              "timing": "CPU (process) seconds, best of --fast-repeats for ours, one run for the oracle; "
                        "*_wall_s fields: wall seconds",
              "note": "the notebook fills its matrix twice per track (for the score and for the loops); the "
                      "oracle once, so the published detector is about twice as slow as the oracle"}
    totals["speedup"] = totals["oracle_total_s_finished"] / max(totals["fast_total_s_finished"], 1e-12)
    return totals


def format_expressive_row(row: dict) -> str:
    if "error" in row:
        return f"{row['file'][:40]:40s} unreadable: {row['error']}"
    oracle = (f"oracle {row['oracle_s']:8.2f} s  ratio {row['ratio']:7.0f}x  equal {row['equal']}"
              if row["oracle_finished"] else "oracle  timeout")
    return (f"{row['file'][:40]:40s} notes {row['num_notes']:6d}  reference {row['fast_s'] * 1e3:8.1f} ms  "
            f"default {row['default_s'] * 1e3:8.1f} ms  loops {row['num_loops']:3d}/{row['num_default_loops']:3d}  "
            f"{oracle}")


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
            "command": " ".join([Path(sys.executable).name, *(_no_machine_path(a) for a in sys.argv)])}


def _no_machine_path(arg: str) -> str:
    """A command-line argument as recorded: an absolute path becomes its last component."""
    return Path(arg).name if os.path.isabs(arg) else arg


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
    parser.add_argument("--expressive", action="store_true",
                        help="benchmark the expressive detector (reference mode) against tests/expressive_oracle.py")
    parser.add_argument("--oracle-timeout", type=float, default=600.0,
                        help="with --expressive: seconds the oracle may take per file (default 600)")
    parser.add_argument("--save", metavar="NAME",
                        help="also write the table and the JSON to benchmarks/results/bench_loops_NAME.{txt,json}")
    args = parser.parse_args(argv)
    files, label = corpus_files(args.folder, args.num_synth)
    if args.expressive:
        return main_expressive(args, files, label)
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


def main_expressive(args: argparse.Namespace, files: list[Path], label: str) -> int:
    """``--expressive``: one row per file, then the totals (and the saved results with ``--save``)."""
    if files:
        timed(analyse_expressive_tracks, Score(files[0]), 1, mode="reference")  # warm-up
        timed(analyse_expressive_tracks, Score(files[0]), 1, mode="default")
    rows, lines = [], []
    for path in files:
        rows.append(bench_expressive_file(path, args.fast_repeats, args.oracle_timeout))
        lines.append(format_expressive_row(rows[-1]))
        if not args.json:
            print(lines[-1], flush=True)
    totals = expressive_totals(rows, label, args.oracle_timeout)
    report = json.dumps({**totals, **environment(), "files": rows}, indent=2)
    lines.append(f"TOTAL {totals['num_files']} files, oracle finished {totals['num_oracle_finished']} "
                 f"({totals['num_files_equal']} equal), reference mode {totals['fast_total_s']:.2f} s, default mode "
                 f"{totals['default_total_s']:.2f} s; on the finished files oracle {totals['oracle_total_s_finished']:.1f} s "
                 f"vs {totals['fast_total_s_finished']:.3f} s: speedup {totals['speedup']:.0f}x "
                 f"(per file: min {totals['ratio_min'] or 0:.0f}x, median {totals['ratio_median'] or 0:.0f}x)")
    print(report if args.json else lines[-1])
    if args.save:
        save_results(f"expressive_{args.save}" if not args.save.startswith("expressive") else args.save, lines, report)
    return 0 if totals["all_finished_equal"] else 1


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
