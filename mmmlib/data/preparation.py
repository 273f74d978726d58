"""Data preparation: validate a MIDI corpus, measure NOMML and loops per track, split it.

Inputs are a folder of ``.mid``/``.midi`` files (searched recursively) or
GigaMIDI-style parquet files (one MIDI file as bytes per row). Every input ends in
exactly one of two places: an accepted file (a row of ``files.parquet``) or a rejected
one (a row of ``rejects.csv`` with the reason); a bad file never stops the run.

Outputs in ``output_dir`` (the contract later stages read):

- ``files.parquet``: one row per accepted file: ``md5, path, row, split, tpq, n_tracks,
  n_bars, n_notes, n_loops, time_signature, tempo``. ``path``/``row`` locate the MIDI
  (``row`` is -1 for a plain file, else the row of the parquet file ``path``); read it
  back with :func:`mmmlib.core.midi.read_score`.
- ``tracks.parquet``: ``md5, track_idx, program, is_drum, name, n_notes, nomml, n_loops,
  loopability`` (``n_loops`` counts both kinds; ``loopability`` is NaN where the expressive
  detector did not run).
- ``loops.parquet``: ``md5, track_idx, start_tick, end_tick, duration_beats, note_density, kind,
  loopability``: ``kind`` is ``exact`` or ``expressive`` (see :mod:`~mmmlib.data.measure` for
  which tracks get the expressive detector); ``loopability`` is the track's score, NaN for exact loops.
- ``rejects.csv``: ``path, row, reason``.

Large corpora are split with ``shard_index``/``num_shards`` (one SLURM array task per
shard writes ``shards/shard_XXXX/``) and joined with :func:`merge_shards`
(``python -m mmmlib data merge OUTPUT_DIR --num-shards N``).

A setting the library cannot work with raises :class:`~mmmlib.core.errors.ConfigError`
naming it; an input or output folder that is missing or malformed as a whole raises
:class:`~mmmlib.core.errors.DataError`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from symusic import Score
from tqdm.auto import tqdm

from mmmlib.core.errors import ConfigError, DataError
from mmmlib.core.midi import read_midi_bytes
from mmmlib.data.expressive import DEFAULT_MODE
from mmmlib.data.figures import data_prep_figures
from mmmlib.data.measure import MeasureSettings, ScoreMeasures, measure_score
from mmmlib.data.synth import write_corpus

MIDI_SUFFIXES = {".mid", ".midi", ".kar"}
SPLIT_FRACTIONS = (("train", 0.8), ("valid", 0.1), ("test", 0.1))
FILES_COLUMNS = ["md5", "path", "row", "split", "tpq", "n_tracks", "n_bars", "n_notes", "n_loops",
                 "time_signature", "tempo"]
TRACKS_COLUMNS = ["md5", "track_idx", "program", "is_drum", "name", "n_notes", "nomml", "n_loops", "loopability"]
LOOPS_COLUMNS = ["md5", "track_idx", "start_tick", "end_tick", "duration_beats", "note_density", "kind",
                 "loopability"]
REJECTS_COLUMNS = ["path", "row", "reason"]


@dataclass(frozen=True)
class Source:
    """One input MIDI file: a path on disk (``row == -1``) or a row of a parquet file."""

    path: str
    row: int = -1

    def label(self) -> str:
        return self.path if self.row < 0 else f"{self.path}#{self.row}"


@dataclass
class FileResult:
    """What processing one source produced: accepted rows, or a rejection reason."""

    source: Source
    reason: str | None = None
    file_row: dict | None = None
    track_rows: list[dict] = field(default_factory=list)
    loop_rows: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs
def list_sources(input_path: str | Path) -> list[Source]:
    """All MIDI sources under ``input_path``, sorted so that every machine sees one order.

    :param input_path: a MIDI file, a parquet file, or a folder searched recursively for both.
    :raises ConfigError: when ``input_path`` does not exist.
    :raises DataError: when it holds no MIDI or parquet file, or a parquet file is unreadable
        (a bad MIDI file is not an error: :func:`prepare` rejects it with a reason).
    """
    root = Path(input_path)
    if not root.exists():
        raise ConfigError("input_path", f"does not exist: {str(root)!r}")
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    sources: list[Source] = []
    for path in paths:
        suffix = path.suffix.lower()
        if suffix in MIDI_SUFFIXES:
            sources.append(Source(str(path)))
        elif suffix == ".parquet":
            try:
                num_rows = pq.ParquetFile(path).metadata.num_rows
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise DataError(f"{path}: not a readable parquet file ({exc})") from exc
            sources.extend(Source(str(path), row) for row in range(num_rows))
    if not sources:
        raise DataError(f"no MIDI (.mid, .midi, .kar) or .parquet input in {root}")
    return sources


def resolve_input(input_path: str, output_dir: str | Path, num_synth_files: int = 200, seed: int = 0) -> Path:
    """The folder or file to read: ``input_path`` itself, or the embedded synthetic corpus.

    With ``input_path == "synthetic"`` the corpus is written once to ``output_dir/corpus``
    (kept when it already holds the same number of files from the same seed).

    :param input_path: a MIDI file, a parquet file, a folder of them, or ``"synthetic"``.
    :param output_dir: the run's output folder (home of the synthetic corpus).
    :param num_synth_files: files of the synthetic corpus.
    :param seed: seed of the synthetic corpus.
    :raises ConfigError: when ``input_path`` does not exist, or ``num_synth_files < 1``.
    """
    if input_path != "synthetic":
        if not input_path or not Path(input_path).exists():  # Path("") would be the working folder
            raise ConfigError("input_path", f"does not exist: {input_path!r} "
                              "(a folder of MIDI files, a .parquet file, or 'synthetic')")
        return Path(input_path)
    if num_synth_files < 1:
        raise ConfigError("num_synth_files", f"must be >= 1, got {num_synth_files}")
    corpus = Path(output_dir) / "corpus"
    stamp = corpus / "corpus.json"
    wanted = f'{{"num_files": {num_synth_files}, "seed": {seed}}}'
    if not (stamp.exists() and stamp.read_text() == wanted):
        write_corpus(corpus, num_files=num_synth_files, seed=seed)
        stamp.write_text(wanted)
    return corpus


def shard_sources(sources: list[Source], shard_index: int, num_shards: int) -> list[Source]:
    """The sources of one shard: every ``num_shards``-th one, starting at ``shard_index``.

    :raises ConfigError: unless ``0 <= shard_index < num_shards``.
    """
    if num_shards < 1:
        raise ConfigError("num_shards", f"must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ConfigError("shard_index", f"must be in [0, num_shards={num_shards}), got {shard_index}")
    return sources[shard_index::num_shards]


def split_of(md5: str, seed: int = 0) -> str:
    """Deterministic 80/10/10 split from the file's md5 (and a seed), the same on every machine."""
    digest = hashlib.sha256(f"{seed}:{md5}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in SPLIT_FRACTIONS:
        cumulative += fraction
        if position < cumulative:
            return name
    return SPLIT_FRACTIONS[-1][0]


# --------------------------------------------------------------------------- one file
def analyse_midi(data: bytes, source: Source, min_bars: int, max_notes: int, seed: int,
                 settings: MeasureSettings | None = None) -> FileResult:
    """Validate one MIDI file and measure it; any failure becomes a rejection reason."""
    if len(data) == 0:
        return FileResult(source, reason="empty file (0 bytes)")
    try:
        score = Score.from_midi(data)
    except Exception as exc:
        return FileResult(source, reason=f"unreadable MIDI: {exc}".strip())
    n_notes = sum(len(t.notes) for t in score.tracks)
    if n_notes == 0:  # symusic drops tracks without notes: no track and no note are one case
        return FileResult(source, reason="no notes")
    if n_notes > max_notes:
        return FileResult(source, reason=f"too many notes ({n_notes} > max_notes={max_notes})")
    from miditok.utils import get_bars_ticks  # imports torch: not at `import mmmlib.data`

    n_bars = len(get_bars_ticks(score, only_notes_onsets=True))
    if n_bars < min_bars:
        return FileResult(source, reason=f"too few bars ({n_bars} < min_bars={min_bars})")
    md5 = hashlib.md5(data).hexdigest()
    settings = settings or MeasureSettings()
    annotations = None
    if settings.use_dataset_annotations and source.row >= 0:
        from mmmlib.data.annotations import read_dataset_annotations

        annotations = read_dataset_annotations(source.path, source.row, score)
    measures = measure_score(score, settings, annotations)
    return _rows(score, source, md5, split_of(md5, seed), n_bars, n_notes, measures)


def _rows(score, source, md5, split, n_bars, n_notes, measures: ScoreMeasures) -> FileResult:
    loops_per_track = [0] * len(score.tracks)
    for loop in measures.loops:
        loops_per_track[loop["track_idx"]] += 1
    ts = score.time_signatures[0] if len(score.time_signatures) else None
    file_row = {
        "md5": md5, "path": source.path, "row": source.row, "split": split,
        "tpq": int(score.ticks_per_quarter), "n_tracks": len(score.tracks), "n_bars": n_bars,
        "n_notes": n_notes, "n_loops": len(measures.loops),
        "time_signature": f"{ts.numerator}/{ts.denominator}" if ts else "4/4",
        "tempo": float(score.tempos[0].qpm) if len(score.tempos) else 120.0,
    }
    track_rows = [
        {"md5": md5, "track_idx": i, "program": int(t.program), "is_drum": bool(t.is_drum),
         "name": str(t.name), "n_notes": len(t.notes), "nomml": measures.nommls[i], "n_loops": loops_per_track[i],
         "loopability": measures.loopability.get(i, float("nan"))}
        for i, t in enumerate(score.tracks)
    ]
    loop_rows = [{"md5": md5, **loop} for loop in measures.loops]
    return FileResult(source, file_row=file_row, track_rows=track_rows, loop_rows=loop_rows)


def process_source(task: tuple[Source, int, int, int, MeasureSettings]) -> FileResult:
    """Worker entry point: read and analyse one source; never raises."""
    source, min_bars, max_notes, seed, settings = task
    try:
        data = read_midi_bytes(source.path, source.row)
    except Exception as exc:
        return FileResult(source, reason=f"cannot read input: {exc}")
    try:
        return analyse_midi(data, source, min_bars, max_notes, seed, settings)
    except Exception as exc:  # a bug or a pathological file must not stop the corpus
        return FileResult(source, reason=f"analysis failed: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- the corpus
@dataclass
class PrepResult:
    """The four tables of a data-prep run (or of one shard)."""

    files: pd.DataFrame
    tracks: pd.DataFrame
    loops: pd.DataFrame
    rejects: pd.DataFrame

    @property
    def num_inputs(self) -> int:
        return len(self.files) + len(self.rejects)

    def counts(self) -> dict[str, int]:
        return {"inputs": self.num_inputs, "accepted": len(self.files), "rejected": len(self.rejects)}


def _iter_results(tasks: list, workers: int, desc: str) -> Iterator[FileResult]:
    if workers <= 1:
        yield from (process_source(t) for t in tqdm(tasks, desc=desc, unit="file"))
        return
    with Pool(workers) as pool:
        chunksize = max(1, min(32, len(tasks) // (workers * 8)))
        yield from tqdm(pool.imap(process_source, tasks, chunksize=chunksize), total=len(tasks),
                        desc=desc, unit="file")


def prepare(sources: list[Source], min_bars: int = 8, max_notes: int = 200_000, workers: int = 1,
            seed: int = 0, expressive_tracks: str = "nomml12", expressive_mode: str = DEFAULT_MODE,
            use_dataset_annotations: bool = False) -> PrepResult:
    """Validate and analyse ``sources``; duplicates (same md5) after the first are rejected.

    :param sources: inputs, e.g. from :func:`list_sources` and :func:`shard_sources`.
    :param min_bars: files with fewer bars (up to the last onset) are rejected.
    :param max_notes: files with more notes in total are rejected.
    :param workers: processes of the pool (1 = in this process).
    :param seed: salt of the deterministic split.
    :param expressive_tracks: tracks searched for expressive loops: ``nomml12``, ``nomml12_files``,
        ``all`` or ``none`` (see :mod:`~mmmlib.data.measure`).
    :param expressive_mode: ``default`` or ``reference`` (see :mod:`~mmmlib.data.expressive`).
    :param use_dataset_annotations: take NOMML and loops from GigaMIDI v1.1 parquet columns
        where a row has them (:mod:`~mmmlib.data.annotations`) instead of computing them.
    :raises ConfigError: on a setting out of range (a bad file is rejected, never raised).
    """
    if min_bars < 0:
        raise ConfigError("min_bars", f"must be >= 0, got {min_bars}")
    if max_notes < 1:
        raise ConfigError("max_notes", f"must be >= 1, got {max_notes}")
    if workers < 1:
        raise ConfigError("workers", f"must be >= 1, got {workers}")
    settings = MeasureSettings(expressive_tracks, expressive_mode, use_dataset_annotations)
    tasks = [(s, min_bars, max_notes, seed, settings) for s in sources]
    files, tracks, loops, rejects = [], [], [], []
    first_path_of: dict[str, str] = {}
    for result in _iter_results(tasks, workers, desc="data prep"):
        if result.reason is None and result.file_row["md5"] in first_path_of:
            result = FileResult(result.source, reason=f"duplicate of {first_path_of[result.file_row['md5']]}")
        if result.reason is not None:
            rejects.append({"path": result.source.path, "row": result.source.row, "reason": result.reason})
            continue
        first_path_of[result.file_row["md5"]] = result.source.label()
        files.append(result.file_row)
        tracks.extend(result.track_rows)
        loops.extend(result.loop_rows)
    return PrepResult(_frame(files, FILES_COLUMNS), _frame(tracks, TRACKS_COLUMNS),
                      _frame(loops, LOOPS_COLUMNS), _frame(rejects, REJECTS_COLUMNS))


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    if "nomml" in frame:  # nullable: empty tracks have no NOMML
        frame["nomml"] = frame["nomml"].astype("Int64")
    if "loopability" in frame:  # NaN where the expressive detector did not run
        frame["loopability"] = frame["loopability"].astype("float64")
    return frame


def summary_table(result: PrepResult) -> pd.DataFrame:
    """One-row-per-quantity overview of a data-prep run, for the notebook and the logs."""
    tracks = result.tracks
    with_notes = tracks[tracks["n_notes"] > 0] if len(tracks) else tracks
    rows = {
        "inputs": result.num_inputs,
        "accepted files": len(result.files),
        "rejected files": len(result.rejects),
        "tracks with notes": len(with_notes),
        "tracks with >= 1 loop": int((tracks["n_loops"] > 0).sum()) if len(tracks) else 0,
        "loops": len(result.loops),
        "exact loops": int((result.loops["kind"] == "exact").sum()),
        "tracks searched for expressive loops": int(tracks["loopability"].notna().sum()) if len(tracks) else 0,
        "expressive loops": int((result.loops["kind"] == "expressive").sum()),
        "expressive tracks (NOMML 12)": int((with_notes["nomml"] == 12).sum()) if len(with_notes) else 0,
        **{f"{s} files": int((result.files["split"] == s).sum()) for s, _ in SPLIT_FRACTIONS},
    }
    return pd.DataFrame({"value": rows})


def write_result(result: PrepResult, folder: str | Path) -> Path:
    """Write the four tables into ``folder``; each file is written whole, then renamed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("files", result.files), ("tracks", result.tracks), ("loops", result.loops)):
        tmp = folder / f".{name}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(folder / f"{name}.parquet")
    tmp = folder / ".rejects.csv.tmp"
    result.rejects.to_csv(tmp, index=False)
    tmp.replace(folder / "rejects.csv")
    return folder


def read_result(folder: str | Path) -> PrepResult:
    """Read back the tables written by :func:`write_result`.

    :raises DataError: when ``folder`` misses one of the four files.
    """
    folder = Path(folder)
    missing = [name for name in ("files.parquet", "tracks.parquet", "loops.parquet", "rejects.csv")
               if not (folder / name).exists()]
    if missing:
        raise DataError(f"{folder} is not a data-prep output (missing {', '.join(missing)}): run 01_data_prep")
    return PrepResult(
        pd.read_parquet(folder / "files.parquet"), pd.read_parquet(folder / "tracks.parquet"),
        pd.read_parquet(folder / "loops.parquet"),
        pd.read_csv(folder / "rejects.csv", keep_default_na=False, dtype={"path": str, "reason": str}),
    )


def shard_dir(output_dir: str | Path, shard_index: int) -> Path:
    """The folder where shard ``shard_index`` of a run writes its tables."""
    return Path(output_dir) / "shards" / f"shard_{shard_index:04d}"


def merge_shards(output_dir: str | Path, num_shards: int) -> PrepResult:
    """Join the shards written under ``output_dir/shards`` into ``output_dir``.

    Files that appear in two shards (same md5) are kept once; the later copies move to
    the rejects as duplicates, so inputs = accepted + rejected still holds.

    :raises ConfigError: when ``num_shards < 1``.
    :raises DataError: when a shard has not written its tables yet.
    """
    if num_shards < 1:
        raise ConfigError("num_shards", f"must be >= 1, got {num_shards}")
    missing = [i for i in range(num_shards) if not (shard_dir(output_dir, i) / "files.parquet").exists()]
    if missing:
        raise DataError(f"shards not finished yet in {Path(output_dir) / 'shards'}: {missing}")
    parts = [read_result(shard_dir(output_dir, i)) for i in range(num_shards)]
    files = pd.concat([p.files for p in parts], ignore_index=True)
    duplicated = files.duplicated("md5", keep="first")
    dup_rejects = files[duplicated].assign(reason="duplicate (same md5 in another shard)")[REJECTS_COLUMNS]
    keep = set(files.loc[~duplicated, "md5"])
    tracks = pd.concat([p.tracks for p in parts], ignore_index=True).drop_duplicates(["md5", "track_idx"])
    loops = pd.concat([p.loops for p in parts], ignore_index=True)
    loops = loops[loops["md5"].isin(keep)].drop_duplicates()
    rejects = pd.concat([*(p.rejects for p in parts), dup_rejects], ignore_index=True)
    merged = PrepResult(files[~duplicated].reset_index(drop=True), tracks[tracks["md5"].isin(keep)],
                        loops.reset_index(drop=True), rejects)
    write_result(merged, output_dir)
    return merged


def main(argv: list[str] | None = None) -> int:
    """``python -m mmmlib data merge OUTPUT_DIR --num-shards N``: join the shards of a SLURM array.

    Writes the four tables and ``figures/`` into ``OUTPUT_DIR`` and prints the counts.

    :param argv: command-line arguments after ``data`` (``sys.argv[1:]`` when None).
    :return: the exit status: 0, or 1 when the shards or their number are wrong.
    """
    parser = argparse.ArgumentParser(prog="mmmlib data", description="Data preparation (stage 01) commands.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    merge = sub.add_parser("merge", help="join OUTPUT_DIR/shards/shard_XXXX into OUTPUT_DIR and draw the figures",
                           description="Join the shards that 01_data_prep wrote as a SLURM array.")
    merge.add_argument("output_dir", help="the output_dir the shard tasks were given")
    merge.add_argument("--num-shards", type=int, required=True, help="number of shards (the array size)")
    args = parser.parse_args(argv)
    try:
        result = merge_shards(args.output_dir, args.num_shards)
    except (ConfigError, DataError) as exc:
        print(f"mmmlib data merge: {exc}", file=sys.stderr)
        return 1
    data_prep_figures(result, Path(args.output_dir) / "figures")
    print(result.counts())
    return 0


if __name__ == "__main__":
    sys.exit(main())
