"""Files of the synthetic corpus: one seeded multitrack score per file, and the manifest.

:func:`generate_score` draws a file's meter, tempo, length, key and roles, then one track
per role (:func:`~mmmlib.data.synth.tracks.track_events`); :func:`generate_performed_score`
draws a file the same way but performs every track, with planted expressive loops
(:func:`~mmmlib.data.synth.tracks.performed_track`); :func:`write_corpus` writes
``synth_0000.mid`` ... (and, when asked, ``expressive_0000.mid`` ...) and ``manifest.csv``;
:func:`main` is ``python -m mmmlib synth``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from symusic import Note, Score, Tempo, TimeSignature, Track

from mmmlib.core.errors import ConfigError
from mmmlib.data.nomml import EXPRESSIVE_LEVEL
from mmmlib.data.synth.bars import HATS, STYLE_NOMML, STYLES_BY_METER, Meter, Voice, pick, style_fits
from mmmlib.data.synth.tracks import performed_track, track_events

TICKS_PER_QUARTER = (96, 120, 192, 384, 480, 960)  # all divisible by 12: triplets and 16ths
MIN_EXPRESSIVE_TPQ = 384  # below it jittered onsets cannot all leave the finest grids
TIME_SIGNATURES = ((4, 4), (3, 4), (6, 8))
TEMPO_RANGE_QPM = (70, 160)
NUM_BARS_RANGE = (8, 32)
EXPRESSIVE_PROB = 0.2  # per track, in files with tpq >= MIN_EXPRESSIVE_TPQ
PERFORMED_TPQ = tuple(t for t in TICKS_PER_QUARTER if t >= MIN_EXPRESSIVE_TPQ)  # performed files
PERFORMED_STREAM = 12  # performed file i draws from default_rng([seed, 12, i]), apart from synth file i
ROLE_PROB = {"drums": 0.85, "bass": 0.9, "chords": 0.9, "lead": 0.75}
PROGRAMS = {  # GM programs; for drums the kit (standard, room, power, electronic, 808, jazz, brush)
    "drums": (0, 8, 16, 24, 25, 32, 40),
    "bass": (32, 33, 34, 35, 36, 38, 39),
    "chords": (0, 4, 5, 16, 19, 24, 25, 48, 49, 88, 89, 90),
    "lead": (11, 40, 56, 65, 66, 71, 73, 80, 81),
}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PROGRESSIONS = ((0, 4, 5, 3), (0, 3, 4, 0), (0, 5, 3, 4), (5, 3, 0, 4), (0, 6, 5, 4), (1, 4, 0, 0))
# Manifest columns describing the planted loop (empty for tracks without one).
LOOP_COLUMNS = (
    "loop_start_tick",
    "loop_end_tick",
    "loop_start_bar",
    "pattern_bars",
    "repetitions",
    "loop_duration_beats",
    "loop_note_density",
)


def _events_to_track(events: list[list], name: str, program: int, is_drum: bool) -> Track:
    """A symusic track from ``[tick, pitches, duration, velocity]`` events."""
    notes = sorted((e[0], pitch, e[2], e[3]) for e in events for pitch in e[1])
    rows = np.array(notes, dtype=np.int64).reshape(-1, 4)
    track = Track(name=name, program=program, is_drum=is_drum)
    track.notes = Note.from_numpy(
        time=rows[:, 0].astype(np.int32),
        duration=rows[:, 2].astype(np.int32),
        pitch=rows[:, 1].astype(np.int8),
        velocity=rows[:, 3].astype(np.int8),
    )
    return track


def _track_styles(rng: np.random.Generator, meter: Meter, num_tracks: int) -> list[str]:
    """One timing style per track: mostly the file's base style, expressive only at high tpq."""
    allowed = [s for s in STYLES_BY_METER[(meter.numerator, meter.denominator)]
               if s != "expressive" and style_fits(s, meter.tpq)]
    base = pick(rng, allowed)
    can_perform = meter.tpq >= MIN_EXPRESSIVE_TPQ
    styles = []
    for _ in range(num_tracks):
        if can_perform and rng.random() < EXPRESSIVE_PROB:
            styles.append("expressive")
        else:
            styles.append(base if rng.random() < 0.5 else pick(rng, allowed))
    return styles


def generate_score(rng: np.random.Generator, file_name: str = "") -> tuple[Score, list[dict]]:
    """One synthetic multitrack file and the manifest rows of its tracks.

    :param rng: the only source of randomness: the same generator state gives the same score.
    :param file_name: stored in the ``file`` column of the rows.
    :return: a tick-time score and one dict per track (columns as in :func:`write_corpus`).
    """
    return _generate(rng, file_name, performed=False)


def generate_performed_score(rng: np.random.Generator, file_name: str = "") -> tuple[Score, list[dict]]:
    """One synthetic file whose every track is performed (NOMML 12), most with a planted expressive loop.

    :param rng: the only source of randomness.
    :param file_name: stored in the ``file`` column of the rows.
    :return: a tick-time score (``tpq >= 384``) and one dict per track, as :func:`generate_score`;
        ``has_loop`` and the loop columns describe the planted expressive loop.
    """
    return _generate(rng, file_name, performed=True)


def _generate(rng: np.random.Generator, file_name: str, performed: bool) -> tuple[Score, list[dict]]:
    """The file-level draws (always in this order: the default corpus is pinned), then one track per role."""
    numerator, denominator = TIME_SIGNATURES[int(rng.integers(len(TIME_SIGNATURES)))]
    meter = Meter(numerator, denominator, pick(rng, PERFORMED_TPQ if performed else TICKS_PER_QUARTER))
    qpm = int(rng.integers(TEMPO_RANGE_QPM[0], TEMPO_RANGE_QPM[1] + 1))
    num_bars = int(rng.integers(NUM_BARS_RANGE[0], NUM_BARS_RANGE[1] + 1))
    key_root, scale = int(rng.integers(12)), SCALES[pick(rng, tuple(SCALES))]
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    roles = [role for role, prob in ROLE_PROB.items() if rng.random() < prob]
    roles = roles if len(roles) >= 2 else ["bass", "chords"]
    score = Score(meter.tpq)
    score.tempos.append(Tempo(0, float(qpm)))
    score.time_signatures.append(TimeSignature(0, numerator, denominator))
    file_columns = {
        "ticks_per_quarter": meter.tpq,
        "time_signature": f"{numerator}/{denominator}",
        "tempo_qpm": qpm,
        "num_bars": num_bars,
    }
    styles = ["expressive"] * len(roles) if performed else _track_styles(rng, meter, len(roles))
    rows = []
    for track_idx, (role, style) in enumerate(zip(roles, styles, strict=True)):
        notes_per_onset = {"drums": int(rng.integers(1, 3)), "chords": int(rng.integers(3, 5))}.get(role, 1)
        voice = Voice(role, key_root, scale, notes_per_onset, hat=pick(rng, HATS))
        if performed:
            events, loop = performed_track(rng, voice, meter, num_bars, progression)
        else:
            events, loop = track_events(rng, voice, style, meter, num_bars, progression)
        program = pick(rng, PROGRAMS[role])
        score.tracks.append(_events_to_track(events, role, program, role == "drums"))
        rows.append(
            {
                "file": file_name,
                "track_idx": track_idx,
                "role": role,
                "program": program,
                "is_drum": role == "drums",
                "timing_style": style,
                "expected_nomml": EXPRESSIVE_LEVEL if performed else STYLE_NOMML[style],
                "has_loop": bool(loop),
                **{key: loop.get(key) for key in LOOP_COLUMNS},
                "num_notes": len(score.tracks[-1].notes),
                **file_columns,
            }
        )
    return score, rows


def write_corpus(out_dir: str | Path, num_files: int = 200, seed: int = 0,
                 num_expressive_files: int = 0) -> pd.DataFrame:
    """Write ``synth_0000.mid`` ... and ``manifest.csv`` (one row per track) to ``out_dir``.

    File ``i`` comes from ``numpy.random.default_rng([seed, i])``: the same seed writes
    byte-identical files, and a smaller corpus is a prefix of a larger one. Files
    ``synth_NNNN.mid`` left in ``out_dir`` by a larger corpus are deleted, so that the
    folder holds exactly the corpus its manifest describes. With ``num_expressive_files``
    the corpus also gets ``expressive_0000.mid`` ... (:func:`generate_performed_score`, from
    ``default_rng([seed, 12, i])``): performed tracks, most with a planted expressive loop,
    listed after the other files in the manifest; the default (0) writes exactly the
    corpus it always has.

    :param out_dir: folder, created if needed.
    :param num_files: number of MIDI files (>= 1).
    :param seed: corpus seed.
    :param num_expressive_files: number of performed files (>= 0).
    :return: the manifest: file, track_idx, role, program, is_drum, timing_style,
        expected_nomml, has_loop, the planted loop (``loop_start_tick``, ``loop_end_tick``,
        ``loop_start_bar``, ``pattern_bars``, ``repetitions``, ``loop_duration_beats``,
        ``loop_note_density``; empty without a loop), num_notes, ticks_per_quarter,
        time_signature, tempo_qpm, num_bars. A planted loop is expressive on the rows with
        ``timing_style == "expressive"``, exact on the others.
    :raises ConfigError: when ``num_files < 1`` or ``num_expressive_files < 0``.
    """
    if num_files < 1:
        raise ConfigError("num_files", f"must be >= 1, got {num_files}")
    if num_expressive_files < 0:
        raise ConfigError("num_expressive_files", f"must be >= 0, got {num_expressive_files}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("synth", num_files), ("expressive", num_expressive_files)):
        for stale in out.glob(f"{prefix}_[0-9][0-9][0-9][0-9].mid"):  # from an earlier, larger corpus
            if int(stale.stem[len(prefix) + 1:]) >= count:
                stale.unlink()
    rows: list[dict] = []
    for file_idx in range(num_files):
        name = f"synth_{file_idx:04d}.mid"
        score, file_rows = generate_score(np.random.default_rng([seed, file_idx]), name)
        score.dump_midi(str(out / name))
        rows += file_rows
    for file_idx in range(num_expressive_files):
        name = f"expressive_{file_idx:04d}.mid"
        score, file_rows = generate_performed_score(np.random.default_rng([seed, PERFORMED_STREAM, file_idx]), name)
        score.dump_midi(str(out / name))
        rows += file_rows
    manifest = pd.DataFrame(rows)
    for column in LOOP_COLUMNS[:6]:
        manifest[column] = manifest[column].astype("Int64")
    manifest.to_csv(out / "manifest.csv", index=False)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``python -m mmmlib synth OUT_DIR --num-files N --seed S``: write the corpus, print a summary.

    :param argv: command-line arguments (``sys.argv[1:]`` when None).
    :return: the exit status, 0.
    """
    parser = argparse.ArgumentParser(
        prog="mmmlib synth", description="Write the embedded synthetic MIDI corpus and its manifest.csv."
    )
    parser.add_argument("out_dir", help="folder for the MIDI files and manifest.csv (created if needed)")
    parser.add_argument("--num-files", type=int, default=200, help="number of MIDI files (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed: the same seed writes the same bytes (default 0)")
    parser.add_argument("--num-expressive-files", type=int, default=0,
                        help="also write this many performed files with planted expressive loops (default 0)")
    args = parser.parse_args(argv)
    if args.num_files < 1:
        parser.error(f"--num-files must be >= 1, got {args.num_files}")
    if args.num_expressive_files < 0:
        parser.error(f"--num-expressive-files must be >= 0, got {args.num_expressive_files}")
    began = time.perf_counter()
    manifest = write_corpus(args.out_dir, args.num_files, args.seed, args.num_expressive_files)
    seconds = time.perf_counter() - began
    print(
        f"wrote {args.num_files + args.num_expressive_files} files, {len(manifest)} tracks, {int(manifest['has_loop'].sum())} planted loops "
        f"to {args.out_dir} in {seconds:.2f} s (seed {args.seed})"
    )
    print(
        manifest.groupby("timing_style")["expected_nomml"]
        .agg(["first", "size"])
        .rename(columns={"first": "nomml", "size": "tracks"})
        .to_string()
    )
    return 0

