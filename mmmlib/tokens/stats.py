"""Tables the tokenizer notebook shows: vocabulary, sequence lengths, control shares, round trips."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mmmlib.core.midi import read_score
from mmmlib.tokens.decoding import roundtrip_file
from mmmlib.tokens.loading import load_any_tokenizer
from mmmlib.tokens.published import PublishedTokenizer
from mmmlib.tokens.published_build import roundtrip_published
from mmmlib.tokens.published_samples import control_of, loops_of_task
from mmmlib.tokens.tokenizer import build_tokenizer
from mmmlib.tokens.vocab import vocab_table

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from datasets import Dataset
    from symusic import Score

    from mmmlib.tokens.corpus import FileTask
    from mmmlib.tokens.tokenizer import MMMLoop


def published_vocab_table(tok: PublishedTokenizer) -> pd.DataFrame:
    """One row per id of a published-dialect tokenizer: ``id``, ``family`` (a control's
    name, ``BPE`` for merged ids, ``▁`` for the id of ``▁`` alone) and ``is_control``."""
    rows = []
    for i, pieces in enumerate(tok.id_tokens()):
        if len(pieces) > 1:
            family = "BPE"
        elif not pieces:
            family = "\u2581"
        elif pieces[0].startswith("AC"):
            family = control_of(pieces[0])
        else:
            family = pieces[0].split("_", 1)[0]
        rows.append({"id": i, "family": family, "is_control": len(pieces) == 1 and pieces[0].startswith("AC")})
    return pd.DataFrame(rows)


def _table(tok: MMMLoop | PublishedTokenizer) -> pd.DataFrame:
    return published_vocab_table(tok) if isinstance(tok, PublishedTokenizer) else vocab_table(tok)


def vocab_by_family(tok: MMMLoop | PublishedTokenizer) -> pd.DataFrame:
    """Number of ids per family (controls grouped as ``track control`` / ``bar control`` too)."""
    table = _table(tok)
    is_bar = table["family"].str.startswith("ACBar")
    kind = np.select([table["is_control"] & ~is_bar, is_bar,
                      table["family"] == "BPE"], ["track control", "bar control", "BPE merge"], "base")
    counts = table.assign(kind=kind).groupby(["kind", "family"]).size().rename("ids")
    return counts.reset_index().sort_values(["kind", "ids"], ascending=[True, False]).reset_index(drop=True)


def sample_rows(dataset: Dataset, max_rows: int, seed: int = 0) -> Dataset:
    """At most ``max_rows`` rows of a split, chosen with a seed (statistics on big splits)."""
    if len(dataset) <= max_rows:
        return dataset
    keep = np.sort(np.random.default_rng(seed).choice(len(dataset), size=max_rows, replace=False))
    return dataset.select(keep)


def length_table(datasets: dict[str, Dataset]) -> pd.DataFrame:
    """Samples, tokens, mean/max length, share of infill samples and of masked ids per split."""
    rows = []
    for split, ds in datasets.items():
        lengths = np.asarray(ds["num_tokens"]) if len(ds) else np.zeros(0)
        masked = sum(int(len(m) - np.sum(m)) for m in ds["loss_mask"]) if len(ds) else 0
        rows.append({"split": split, "samples": len(ds), "tokens": int(lengths.sum()),
                     "mean_len": float(lengths.mean()) if len(ds) else 0.0,
                     "max_len": int(lengths.max()) if len(ds) else 0,
                     "infill_share": float(np.mean(np.asarray(ds["infill_bars"]) > 0)) if len(ds) else 0.0,
                     "masked_share": masked / max(int(lengths.sum()), 1)})
    return pd.DataFrame(rows)


def control_shares(tok: MMMLoop | PublishedTokenizer, dataset: Dataset) -> pd.DataFrame:
    """Per control token type: its ids in the split and its share of all ids."""
    if len(dataset) == 0:
        return pd.DataFrame(columns=["control", "count", "share"])
    ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in dataset["input_ids"]])
    counts = np.bincount(ids, minlength=len(tok))
    table = _table(tok)
    controls = table[table["is_control"]]
    per_type = controls.assign(count=counts[controls["id"].to_numpy()]).groupby("family")["count"].sum()
    out = per_type.rename_axis("control").reset_index()
    out["share"] = out["count"] / len(ids)
    return out.sort_values("count", ascending=False).reset_index(drop=True)


def roundtrip_rows(tok: MMMLoop | PublishedTokenizer, score: Score, loops: dict | None = None) -> list[dict]:
    """Encode, decode and compare each track of a score, in the tokenizer's dialect.

    :return: the rows of :func:`mmmlib.tokens.decoding.roundtrip_file`.
    """
    measure = roundtrip_published if isinstance(tok, PublishedTokenizer) else roundtrip_file
    return measure(tok, score, loops)


def roundtrip_table(tok: MMMLoop | PublishedTokenizer, tasks: Sequence[FileTask],
                    read: Callable = read_score) -> pd.DataFrame:
    """:func:`mmmlib.tokens.decoding.roundtrip_file` of each task's file, one row per track.

    :param tok: the tokenizer.
    :param tasks: files to measure (:func:`mmmlib.tokens.corpus.tasks_of`).
    :param read: ``read(path, row) -> Score``; default :func:`mmmlib.core.midi.read_score`.
    :return: one row per encoded track: ``md5, tpq`` and the columns of ``roundtrip_file``.
    """
    rows = []
    for task in tasks:
        score = read(task.path, task.row)
        for row in roundtrip_rows(tok, score, task.loops):
            rows.append({"md5": task.md5, "tpq": score.ticks_per_quarter, **row})
    return pd.DataFrame(rows)


def roundtrip_example(tok: MMMLoop | PublishedTokenizer, task: FileTask,
                      read: Callable = read_score) -> tuple[Score, Score, int, int]:
    """One file encoded (its loops marked) and decoded, for the notebook's piano rolls.

    :return: ``(original, decoded, encoded tracks, decoding errors)``.
    """
    original = read(task.path, task.row)
    if isinstance(tok, PublishedTokenizer):
        encoding = tok.encode_full(original, loops=loops_of_task(task.loops), loop_tracks="source")
        decoded = tok.decode_full(encoding.ids)
        return original, decoded.score, len(encoding.kept_tracks), int(sum(decoded.report.values()))
    tracks = tok.encode_score(original, task.loops)
    result = tok.decode_ids(tok.tokens_to_ids([t for track in tracks for t in track.tokens()]))
    return original, result.score, len(tracks), result.num_errors


def roundtrip_summary(table: pd.DataFrame) -> pd.DataFrame:
    """NOMML kept, notes kept, onset error (beats) and decoding errors over a round-trip table."""
    if len(table) == 0:
        return pd.DataFrame({"value": {}})
    error_beats = table["max_onset_error_ticks"].astype(float) / table["tpq"]
    values = {
        "tracks": len(table),
        "NOMML kept (%)": 100 * float((table["nomml_before"] == table["nomml_after"]).mean()),
        "notes kept (%)": 100 * float(table["notes_after"].sum() / max(table["notes_before"].sum(), 1)),
        "tracks with all notes (%)": 100 * float((table["notes_after"] == table["notes_before"]).mean()),
        "max onset error (beats)": float(error_beats.max()),
        "mean of per-track max onset error (beats)": float(error_beats.mean()),
        "decoding errors": int(table["num_errors"].sum()),
    }
    return pd.DataFrame({"value": values})


def main(argv: list[str] | None = None) -> int:
    """``mmmlib tokenizer roundtrip [--tokenizer PATH] FILE...``: encode, decode, compare (either dialect)."""
    parser = argparse.ArgumentParser(prog="mmmlib tokenizer", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rt = sub.add_parser("roundtrip", help="one JSON object per track: NOMML, notes, onset error")
    rt.add_argument("--tokenizer", help="tokenizer JSON of either dialect (default: a new mmmlib expressive tokenizer)")
    rt.add_argument("files", nargs="+", help="MIDI files")
    args = parser.parse_args(argv)
    tok = load_any_tokenizer(args.tokenizer) if args.tokenizer else build_tokenizer()
    status = 0
    for path in args.files:
        try:
            rows = roundtrip_rows(tok, read_score(path))
        except Exception as exc:  # one unreadable file must not stop the others
            print(f"{path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        for row in rows:
            print(json.dumps({"file": path, **{k: v for k, v in row.items() if k != "num_errors"}}))
    return status


if __name__ == "__main__":
    sys.exit(main())
