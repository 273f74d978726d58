"""Render generated loops to audio with a General MIDI SoundFont, for listening.

We never download a SoundFont (``symusic.Synthesizer()`` without a path would): one is
looked up in the places below, in order, and rendering is skipped with a one-line
message when there is none. On Debian/Ubuntu ``apt-get install fluid-soundfont-gm``
provides ``/usr/share/sounds/sf2/FluidR3_GM.sf2``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import wavfile

SOUNDFONT_ENV_VARS = ("MMMLIB_SOUNDFONT", "SOUNDFONT", "SF2_PATH")
STANDARD_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
    "~/.local/share/soundfonts/default.sf2",
)
SAMPLE_RATE = 22050  # mono 22 kHz keeps the embedded players of the HTML report small
MAX_SECONDS = 40.0  # longer renders are cut: a long slow loop played twice would bloat the report


def find_soundfont(explicit: str = "") -> Path | None:
    """First SoundFont found: ``explicit``, then the environment variables, then standard places.

    Also accepts the font that symusic keeps in its data folder once a user downloaded
    it on purpose (never downloaded here).

    :param explicit: a path given as a parameter ("" to search).
    :return: the path, or None when none exists.
    """
    candidates = [explicit] if explicit else []
    candidates += [os.environ.get(name, "") for name in SOUNDFONT_ENV_VARS]
    candidates += list(STANDARD_SOUNDFONTS)
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    try:
        from symusic import BuiltInSF3

        cached = BuiltInSF3.MuseScoreGeneral().path(download=False)
    except Exception:  # symusic without its SoundFont helpers
        return None
    return cached if cached.is_file() else None


def repeat_score(score, times: int, length_ticks: int):
    """A copy of ``score`` whose notes are played ``times`` times, every ``length_ticks``."""
    from symusic.core import NoteTickList

    repeated = score.copy()
    for original, track in zip(score.tracks, repeated.tracks, strict=True):
        notes = original.notes.numpy()
        columns = {k: np.concatenate([notes[k]] * times) for k in notes}
        columns["time"] = np.concatenate([notes["time"] + i * length_ticks for i in range(times)])
        track.notes = NoteTickList.from_numpy(
            columns["time"].astype(np.int32), columns["duration"].astype(np.int32),
            columns["pitch"].astype(np.int8), columns["velocity"].astype(np.int8))
    return repeated


class RenderError(RuntimeError):
    """No synthesizer could render the file (the message says why)."""


def render_wav(midi_path: str | Path, wav_path: str | Path, soundfont: Path, repeats: int = 2,
               num_bars: float | None = None) -> Path:
    """Render a generated loop, played ``repeats`` times (so its seam is heard), to a WAV file.

    Tries symusic's synthesizer, then the ``fluidsynth`` program when it is on the PATH
    (symusic 0.6.0's ``Synthesizer.render`` fails to return its buffer on some builds).

    :param soundfont: a General MIDI ``.sf2``/``.sf3`` file (see :func:`find_soundfont`).
    :param num_bars: length of the loop in bars (else up to the bar after its last onset).
    :raises RenderError: when neither synthesizer works.
    """
    from symusic import Score

    from mmmlib.evaluation.loopability import segment_ticks

    score = Score(str(midi_path))
    repeated = repeat_score(score, repeats, segment_ticks(score, num_bars))
    wav_path = Path(wav_path)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _render_symusic(repeated, wav_path, soundfont)
    except (TypeError, RuntimeError) as exc:
        symusic_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    if shutil.which("fluidsynth") is None:
        raise RenderError(f"symusic's synthesizer failed ({symusic_error}) and fluidsynth is not installed")
    return _render_fluidsynth(repeated, wav_path, soundfont)


@functools.lru_cache(maxsize=2)
def _synthesizer(soundfont: str):
    from symusic import Synthesizer

    return Synthesizer(sf_path=soundfont, sample_rate=SAMPLE_RATE, quality=0)


def _render_symusic(score, wav_path: Path, soundfont: Path) -> Path:
    from symusic import dump_wav

    audio = np.asarray(_synthesizer(str(soundfont)).render(score, stereo=True)).mean(axis=0, keepdims=True)
    audio = audio[:, : int(MAX_SECONDS * SAMPLE_RATE)]
    dump_wav(str(wav_path), np.asfortranarray(audio, dtype=np.float32), SAMPLE_RATE, use_int16=True)
    return wav_path


def _render_fluidsynth(score, wav_path: Path, soundfont: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        midi = Path(tmp) / "loop.mid"
        score.dump_midi(str(midi))
        command = ["fluidsynth", "-ni", "-q", "-g", "0.7", "-r", str(SAMPLE_RATE), "-T", "wav",
                   "-F", str(wav_path), str(soundfont), str(midi)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not wav_path.is_file():
        raise RenderError(f"fluidsynth failed ({done.returncode}): {done.stderr.strip()[:200]}")
    rate, samples = wavfile.read(wav_path)  # fluidsynth writes stereo: keep one channel's worth
    mono = samples.reshape(len(samples), -1).mean(axis=1)[: int(MAX_SECONDS * rate)]
    wavfile.write(wav_path, rate, mono.astype(samples.dtype))
    return wav_path


def pick_examples(final: pd.DataFrame, num: int, seed: int = 0) -> pd.DataFrame:
    """``num`` generated files to listen to, loops first, drawn with ``seed``.

    :param final: final rows with ``midi_file``, ``gen_id`` and (optionally) ``has_loop``.
    :return: one row per file: ``gen_id``, ``midi_file``, ``n_bars``, ``has_loop``.
    """
    has_loop = final["has_loop"] if "has_loop" in final else pd.Series(False, final.index)
    num_bars = pd.to_numeric(final["n_bars"], errors="coerce") if "n_bars" in final else np.nan
    files = final.assign(has_loop=has_loop, n_bars=num_bars).groupby("midi_file", sort=True).agg(
        gen_id=("gen_id", "first"), n_bars=("n_bars", "max"), has_loop=("has_loop", "any")).reset_index()
    files = files.sample(frac=1.0, random_state=seed).sort_values("has_loop", ascending=False, kind="stable")
    return files.head(num).reset_index(drop=True)


def render_examples(final: pd.DataFrame, out_dir: str | Path, num: int, soundfont: str = "",
                    seed: int = 0) -> list[Path]:
    """Render ``num`` generated loops (played twice) to ``out_dir/<gen_id>.wav``.

    Prints one line and returns [] when no SoundFont is found or ``num`` is 0.
    """
    if num <= 0:
        return []
    font = find_soundfont(soundfont)
    if font is None:
        print("No General MIDI SoundFont found (set the `soundfont` parameter or MMMLIB_SOUNDFONT, or "
              "apt-get install fluid-soundfont-gm); audio examples skipped.")
        return []
    paths = []
    for row in pick_examples(final, num, seed).itertuples(index=False):
        try:
            name = re.sub(r"[^\w.-]", "_", str(row.gen_id))  # gen_id is free text: keep the name safe
            paths.append(render_wav(row.midi_file, Path(out_dir) / f"{name}.wav", font, num_bars=row.n_bars))
        except RenderError as exc:  # no synthesizer at all: one line, and on with the report
            print(f"audio examples skipped: {exc}")
            return paths
        except Exception as exc:  # one bad file must not cost the other examples
            print(f"could not render {row.midi_file}: {exc}")
    print(f"rendered {len(paths)} example(s) with {font}")
    return paths


def players(paths: list[Path]) -> list:
    """IPython audio players (embedded, so they survive the HTML export), one per WAV file."""
    from IPython.display import Audio

    return [Audio(filename=str(path), embed=True) for path in paths]
