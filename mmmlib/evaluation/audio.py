"""Render generated loops to audio with a General MIDI SoundFont, for listening.

Each loop is played ``repeats`` times (twice by default) so that its seam is heard; the WAV
lasts exactly that long (``repeats`` x the loop's bars under the file's tempo map), with a
short fade so that a note held over the end does not click.

The synthesizer is TinySoundFont through the ``tinysoundfont`` package (MIT; ``make setup``
installs it with ``--no-deps``: its ``pyaudio`` dependency only plays sound live and we
write files). Where it is missing (the conda environment), the ``fluidsynth`` program is used
when it is on the PATH. symusic 0.6.0's ``Synthesizer.render`` raises a TypeError when it
returns its buffer, so it is not used.

The SoundFont is the first of (see :func:`find_soundfont`): the ``soundfont`` parameter,
``$MMMLIB_SOUNDFONT`` (or ``$SOUNDFONT``, ``$SF2_PATH``), a system General MIDI font
(Debian's ``fluid-soundfont-gm``: FluidR3_GM, MIT), then ``TimGM6mb.sf2`` (GPL-2, by Tim
Brechbill), which the ``pretty_midi`` package ships and ``make setup`` installs. Nothing is
ever downloaded.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time
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
BUNDLED_SOUNDFONT = ("pretty_midi", "TimGM6mb.sf2")  # (package, file): installed by `make setup`
SAMPLE_RATE = 22050  # mono 22 kHz 16-bit keeps the embedded players of the HTML report small
MAX_SECONDS = 40.0  # longer renders are cut: a long slow loop played twice would bloat the report
FADE_SECONDS = 0.02  # fade-out at the very end, so a note held over the end does not click
PEAK = 0.9  # a louder mix is scaled down to this peak (never up: quiet loops stay quiet)
DEFAULT_QPM = 120.0  # tempo before a file's first tempo event (the MIDI default)
DRUM_CHANNEL = 9
PITCHED_CHANNELS = (*range(9), *range(10, 16))


class RenderError(RuntimeError):
    """No synthesizer could render the file (the message says why)."""


# --------------------------------------------------------------------------- SoundFont and synthesizer
def bundled_soundfont() -> Path | None:
    """The General MIDI SoundFont that ``make setup`` installs (``TimGM6mb.sf2`` in ``pretty_midi``).

    Found without importing the package.

    :return: its path, or None when the package is not installed.
    """
    package, name = BUNDLED_SOUNDFONT
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def find_soundfont(explicit: str = "") -> Path | None:
    """First SoundFont found: ``explicit``, the environment variables, system fonts, the bundled one.

    The environment variables are ``SOUNDFONT_ENV_VARS`` (``MMMLIB_SOUNDFONT`` first), the
    system fonts ``STANDARD_SOUNDFONTS`` (FluidR3_GM first), the bundled font
    :func:`bundled_soundfont`. Last comes the font symusic keeps in its data folder when a
    user downloaded it on purpose (never downloaded here).

    :param explicit: a path given as a parameter ("" to search).
    :return: the path, or None when none exists.
    """
    candidates = [explicit] if explicit else []
    candidates += [os.environ.get(name, "") for name in SOUNDFONT_ENV_VARS]
    candidates += list(STANDARD_SOUNDFONTS)
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    bundled = bundled_soundfont()
    if bundled is not None:
        return bundled
    try:
        from symusic import BuiltInSF3

        cached = BuiltInSF3.MuseScoreGeneral().path(download=False)
    except Exception:  # symusic without its SoundFont helpers
        return None
    return cached if cached.is_file() else None


def synthesizer_name() -> str | None:
    """The synthesizer :func:`render_wav` uses: ``"tinysoundfont"``, ``"fluidsynth"`` or None (none)."""
    if importlib.util.find_spec("tinysoundfont") is not None:
        return "tinysoundfont"
    return "fluidsynth" if shutil.which("fluidsynth") else None


# --------------------------------------------------------------------------- timing
def ticks_to_seconds(score, ticks) -> np.ndarray:
    """Seconds at ``ticks`` under the score's tempo map (120 quarter notes per minute before the first tempo).

    :param score: a tick-time symusic score.
    :param ticks: one tick or an array of ticks.
    :return: seconds, shaped like ``ticks``.
    """
    ticks = np.asarray(ticks, dtype=np.float64)
    tempos = score.tempos.numpy()
    order = np.argsort(tempos["time"], kind="stable")
    starts = np.concatenate([[0.0], tempos["time"][order].astype(np.float64)])
    seconds_per_tick = np.concatenate([[60.0 / DEFAULT_QPM * 1e6], tempos["mspq"][order]]) / 1e6
    seconds_per_tick = seconds_per_tick / score.ticks_per_quarter
    starts_seconds = np.concatenate([[0.0], np.cumsum(np.diff(starts) * seconds_per_tick[:-1])])
    index = np.searchsorted(starts, ticks, side="right") - 1
    return starts_seconds[index] + (ticks - starts[index]) * seconds_per_tick[index]


def repeat_score(score, times: int, length_ticks: int):
    """A copy of ``score`` whose loop (its first ``length_ticks``) is played ``times`` times in a row.

    Notes starting after the loop are dropped; so are tempo changes after it. Each repetition
    starts at the tempo of the loop's start.
    """
    from symusic import Tempo
    from symusic.core import NoteTickList

    repeated = score.copy()
    for original, track in zip(score.tracks, repeated.tracks, strict=True):
        notes = original.notes.numpy()
        notes = {k: v[notes["time"] < length_ticks] for k, v in notes.items()}
        columns = {k: np.concatenate([notes[k]] * times) for k in notes}
        columns["time"] = np.concatenate([notes["time"] + i * length_ticks for i in range(times)])
        track.notes = NoteTickList.from_numpy(
            columns["time"].astype(np.int32), columns["duration"].astype(np.int32),
            columns["pitch"].astype(np.int8), columns["velocity"].astype(np.int8))
    tempos = score.tempos.numpy()
    inside = tempos["time"] < length_ticks
    start_mspq = round(float(ticks_to_seconds(score, 1.0)) * score.ticks_per_quarter * 1e6)  # tempo at tick 0
    repeated.tempos.clear()
    for i in range(times):
        repeated.tempos.append(Tempo(i * length_ticks, mspq=start_mspq))
        for tick, mspq in zip(tempos["time"][inside], tempos["mspq"][inside], strict=True):
            repeated.tempos.append(Tempo(int(tick) + i * length_ticks, mspq=int(mspq)))
    repeated.tempos.sort()
    return repeated


# --------------------------------------------------------------------------- rendering
def render_audio(score, num_samples: int, soundfont: Path) -> np.ndarray:
    """Mono float audio of ``score``, exactly ``num_samples`` long at ``SAMPLE_RATE``.

    Notes still sounding at the end are cut (with a short fade); the mix is scaled down to
    ``PEAK`` when it is louder.

    :param score: a tick-time symusic score.
    :param soundfont: a General MIDI ``.sf2``/``.sf3`` file (see :func:`find_soundfont`).
    :raises RenderError: when no synthesizer works.
    """
    name = synthesizer_name()
    if name is None:
        raise RenderError("no synthesizer: `pip install --no-deps tinysoundfont` (make setup does) "
                          "or install the fluidsynth program")
    render = _render_tinysoundfont if name == "tinysoundfont" else _render_fluidsynth
    audio = render(score, num_samples, soundfont)
    fitted = np.zeros(num_samples, dtype=np.float32)
    fitted[: min(num_samples, len(audio))] = audio[:num_samples]
    fade = min(int(FADE_SECONDS * SAMPLE_RATE), num_samples)
    fitted[num_samples - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.abs(fitted).max(initial=0.0))
    return fitted * (PEAK / peak) if peak > PEAK else fitted


def render_wav(midi_path: str | Path, wav_path: str | Path, soundfont: Path, repeats: int = 2,
               num_bars: float | None = None) -> Path:
    """Render a generated loop, played ``repeats`` times (so its seam is heard), to a mono WAV file.

    The file lasts ``repeats`` x the loop's length (cut at ``MAX_SECONDS``).

    :param midi_path: the loop's MIDI file.
    :param wav_path: the WAV file to write (16-bit, ``SAMPLE_RATE``).
    :param soundfont: a General MIDI ``.sf2``/``.sf3`` file (see :func:`find_soundfont`).
    :param repeats: times the loop is played.
    :param num_bars: length of the loop in bars (else up to the bar after its last onset).
    :return: ``wav_path``.
    :raises RenderError: when no synthesizer works.
    """
    from symusic import Score

    from mmmlib.evaluation.loopability import segment_ticks

    score = Score(str(midi_path))
    length_ticks = segment_ticks(score, num_bars)
    repeated = repeat_score(score, repeats, length_ticks)
    seconds = min(float(ticks_to_seconds(repeated, repeats * length_ticks)), MAX_SECONDS)
    audio = render_audio(repeated, max(int(round(seconds * SAMPLE_RATE)), 1), soundfont)
    wav_path = Path(wav_path)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(wav_path, SAMPLE_RATE, np.round(audio * 32767).astype(np.int16))
    return wav_path


def note_events(score) -> pd.DataFrame:
    """Note-on and note-off events of ``score`` in samples, in playing order, with their channels.

    Drum tracks play on MIDI channel 10 (index 9); each GM program of the pitched tracks gets a
    channel of its own (programs wrap around past 15).

    :return: columns ``sample``, ``is_on``, ``channel``, ``program``, ``is_drum``, ``pitch``,
        ``velocity``; note-offs come before note-ons at the same sample.
    """
    channels: dict[tuple[int, bool], int] = {}
    frames = []
    for track in score.tracks:
        notes = track.notes.numpy()
        if not len(notes["time"]):
            continue
        key = (int(track.program), bool(track.is_drum))
        if key not in channels:
            pitched = sum(not drum for _, drum in channels)
            channels[key] = DRUM_CHANNEL if track.is_drum else PITCHED_CHANNELS[pitched % len(PITCHED_CHANNELS)]
        start = np.round(ticks_to_seconds(score, notes["time"]) * SAMPLE_RATE).astype(np.int64)
        end = np.round(ticks_to_seconds(score, notes["time"] + notes["duration"]) * SAMPLE_RATE).astype(np.int64)
        for sample, is_on in ((start, True), (np.maximum(end, start + 1), False)):
            frames.append(pd.DataFrame({
                "sample": sample, "is_on": is_on, "channel": channels[key], "program": key[0],
                "is_drum": key[1], "pitch": notes["pitch"].astype(int), "velocity": notes["velocity"].astype(int)}))
    columns = ["sample", "is_on", "channel", "program", "is_drum", "pitch", "velocity"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).sort_values(["sample", "is_on"], kind="stable", ignore_index=True)


def _render_tinysoundfont(score, num_samples: int, soundfont: Path) -> np.ndarray:
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(str(soundfont))
    events = note_events(score)
    for row in events.drop_duplicates("channel").itertuples(index=False):
        try:  # is_drums selects the drum bank (128) of the font
            synth.program_select(row.channel, sfid, 0, row.program, is_drums=row.is_drum)
        except RuntimeError:  # a font without this program: its first one
            synth.program_select(row.channel, sfid, 0, 0, is_drums=row.is_drum)
    stereo = np.zeros((num_samples, 2), dtype=np.float32)
    position = 0
    for sample, is_on, channel, pitch, velocity in events[
            ["sample", "is_on", "channel", "pitch", "velocity"]].itertuples(index=False):
        sample = min(int(sample), num_samples)
        if sample > position:  # the synth writes interleaved stereo floats straight into our buffer
            synth.generate_simple(sample - position, buffer=memoryview(stereo[position:sample]).cast("B"))
            position = sample
        if sample >= num_samples:
            break
        if is_on:
            synth.noteon(int(channel), int(pitch), int(velocity))
        else:
            synth.noteoff(int(channel), int(pitch))
    if position < num_samples:
        synth.generate_simple(num_samples - position, buffer=memoryview(stereo[position:]).cast("B"))
    return stereo.mean(axis=1)


def _render_fluidsynth(score, num_samples: int, soundfont: Path) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = Path(tmp) / "loop.mid", Path(tmp) / "loop.wav"
        score.dump_midi(str(midi))
        command = ["fluidsynth", "-ni", "-q", "-g", "0.7", "-r", str(SAMPLE_RATE), "-T", "wav",
                   "-F", str(wav), str(soundfont), str(midi)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not wav.is_file():
            raise RenderError(f"fluidsynth failed ({done.returncode}): {done.stderr.strip()[:200]}")
        rate, samples = wavfile.read(wav)
    scale = 32768.0 if samples.dtype == np.int16 else 1.0
    return samples.reshape(len(samples), -1).mean(axis=1).astype(np.float32) / scale


# --------------------------------------------------------------------------- examples for the notebooks
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
    """Render ``num`` generated loops (each played twice) to ``out_dir/<gen_id>.wav``.

    Prints one line and returns [] when no SoundFont or synthesizer is found or ``num`` is 0.

    :param final: final rows (see :func:`pick_examples`).
    :param soundfont: a SoundFont path, or "" to search (see :func:`find_soundfont`).
    :return: the WAV files written.
    """
    if num <= 0:
        return []
    font = find_soundfont(soundfont)
    if font is None:
        print("No General MIDI SoundFont found (`make setup` installs one; or set the `soundfont` parameter "
              "or MMMLIB_SOUNDFONT); audio examples skipped.")
        return []
    paths, started = [], time.perf_counter()
    for row in pick_examples(final, num, seed).itertuples(index=False):
        try:
            name = re.sub(r"[^\w.-]", "_", str(row.gen_id))  # gen_id is free text: keep the name safe
            paths.append(render_wav(row.midi_file, Path(out_dir) / f"{name}.wav", font, num_bars=row.n_bars))
        except RenderError as exc:  # no synthesizer at all: one line, and on with the report
            print(f"audio examples skipped: {exc}")
            return paths
        except Exception as exc:  # one bad file must not cost the other examples
            print(f"could not render {row.midi_file}: {exc}")
    print(f"rendered {len(paths)} example(s) with {synthesizer_name()} and {font} "
          f"in {time.perf_counter() - started:.2f} s")
    return paths


def players(paths: list[Path]) -> list:
    """A caption and an IPython audio player (embedded, so it survives the HTML export) per WAV file.

    :param paths: WAV files named after their generation (as :func:`render_examples` writes them).
    :return: objects for ``display(*players(paths))``.
    """
    from IPython.display import HTML, Audio

    shown = []
    for path in map(Path, paths):
        rate, samples = wavfile.read(path, mmap=True)
        caption = f"<b>{html.escape(path.stem)}</b>: played twice ({len(samples) / rate:.1f} s)"
        shown += [HTML(caption), Audio(filename=str(path), embed=True)]
    return shown
