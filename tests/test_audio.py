"""Audio previews (mmmlib.evaluation.audio): a loop played twice lasts twice its length, and is heard.

The rendering tests need a synthesizer (``tinysoundfont``) and a General MIDI SoundFont
(``pretty_midi``'s TimGM6mb.sf2), both installed by ``make setup``. They skip with the reason
where either is missing, except on CI (``CI`` set), which runs ``make setup`` first: there they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import wavfile

from mmmlib.evaluation import audio

TPQ = 480


def require_synthesizer() -> Path:
    """The SoundFont to render with; skips (fails on CI) when it or the synthesizer is missing."""
    font, name = audio.find_soundfont(), audio.synthesizer_name()
    if font is not None and name is not None:
        return font
    missing = "no General MIDI SoundFont" if font is None else "no synthesizer (tinysoundfont or fluidsynth)"
    if os.environ.get("CI"):
        pytest.fail(f"{missing} on CI, where `make setup` installs tinysoundfont and the SoundFont")
    pytest.skip(f"{missing}: `make setup` installs tinysoundfont and the SoundFont")


def write_loop(path: Path, num_bars: int, numerator: int = 4, qpm: float = 120.0, second_qpm: float | None = None,
               drums: bool = True, pitched: bool = True) -> Path:
    """A loop of ``num_bars`` bars of ``numerator``/4: a bass note on every beat, a hi-hat on every eighth.

    ``second_qpm`` changes the tempo at the start of the second bar.
    """
    from symusic import Note, Score, Tempo, TimeSignature, Track

    score = Score(TPQ)
    score.time_signatures.append(TimeSignature(0, numerator, 4))
    score.tempos.append(Tempo(0, qpm=qpm))
    if second_qpm is not None:
        score.tempos.append(Tempo(numerator * TPQ, qpm=second_qpm))
    bass, kit = Track("bass", 33, False), Track("drums", 0, True)
    for beat in range(num_bars * numerator):
        bass.notes.append(Note(beat * TPQ, TPQ // 2, 36 + 2 * (beat % numerator), 90))
        for half in (0, 1):
            kit.notes.append(Note(beat * TPQ + half * TPQ // 2, TPQ // 4, 42 if half else 36, 100))
    score.tracks.extend([t for t, keep in ((bass, pitched), (kit, drums)) if keep])
    score.dump_midi(str(path))
    return path


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean((samples.astype(np.float64) / 32768) ** 2)))


@pytest.mark.parametrize(("num_bars", "numerator", "qpm", "second_qpm", "expected_seconds"), [
    (1, 4, 120.0, None, 2 * 2.0),  # one 4/4 bar at 120: 2 s, played twice
    (2, 3, 90.0, None, 2 * 4.0),  # two 3/4 bars at 90: 4 s
    (2, 4, 120.0, 60.0, 2 * 6.0),  # 2 s at 120, then a bar at 60: 4 s
], ids=["4-4_120", "3-4_90", "tempo_change"])
def test_a_loop_played_twice_lasts_twice_its_length_and_is_heard(tmp_path, num_bars, numerator, qpm, second_qpm,
                                                                 expected_seconds):
    font = require_synthesizer()
    midi = write_loop(tmp_path / "loop.mid", num_bars, numerator, qpm, second_qpm)
    wav = audio.render_wav(midi, tmp_path / "loop.wav", font, num_bars=num_bars)
    rate, samples = wavfile.read(wav)
    assert rate == audio.SAMPLE_RATE and samples.ndim == 1
    assert abs(len(samples) - expected_seconds * rate) <= 1
    half = len(samples) // 2
    first, second = samples[:half], samples[half:2 * half]
    assert rms(first) > 0.01 and rms(second) > 0.01, "each playing of the loop is heard"
    # the second playing is the first one again (only the first playing's release tails differ)
    assert np.corrcoef(first.astype(np.float64), second.astype(np.float64))[0, 1] > 0.9
    assert abs(rms(second) / rms(first) - 1) < 0.1


def test_silence_renders_as_silence_and_each_track_is_heard(tmp_path):
    """The loudness checks above can fail: a score without notes gives silence of the same length."""
    from symusic import Score

    font = require_synthesizer()
    silent = audio.render_audio(Score(TPQ), audio.SAMPLE_RATE, font)
    assert len(silent) == audio.SAMPLE_RATE and not np.any(silent)
    for name, drums, pitched in (("drums", True, False), ("bass", False, True)):
        midi = write_loop(tmp_path / f"{name}.mid", 1, drums=drums, pitched=pitched)
        rate, samples = wavfile.read(audio.render_wav(midi, tmp_path / f"{name}.wav", font, num_bars=1))
        assert rms(samples) > 0.01, f"the {name} track alone is heard"


def test_rests_are_quiet_where_the_loop_has_no_notes(tmp_path):
    """A note on beat 1 only: the sound follows the notes in time (loud on the note, quiet before the next bar)."""
    from symusic import Note, Score, Track

    font = require_synthesizer()
    score = Score(TPQ)
    piano = Track("piano", 0, False)
    piano.notes.append(Note(0, TPQ // 4, 72, 100))
    score.tracks.append(piano)
    score.dump_midi(str(tmp_path / "one_note.mid"))
    rate, samples = wavfile.read(audio.render_wav(tmp_path / "one_note.mid", tmp_path / "one.wav", font, num_bars=1))
    beat = rate // 2  # 120 quarter notes per minute
    assert len(samples) == 8 * beat
    assert rms(samples[:beat]) > 10 * rms(samples[3 * beat: 4 * beat])  # the note, then the end of the bar
    assert rms(samples[4 * beat: 5 * beat]) > 10 * rms(samples[3 * beat: 4 * beat])  # played again


def test_ticks_to_seconds_follows_the_tempo_map():
    from symusic import Score, Tempo

    score = Score(TPQ)
    assert audio.ticks_to_seconds(score, [0, TPQ, 4 * TPQ]).tolist() == [0.0, 0.5, 2.0]  # 120 by default
    score.tempos.append(Tempo(0, qpm=60.0))
    score.tempos.append(Tempo(2 * TPQ, qpm=120.0))
    assert audio.ticks_to_seconds(score, [TPQ, 2 * TPQ, 3 * TPQ]).tolist() == pytest.approx([1.0, 2.0, 2.5])


def test_find_soundfont_prefers_the_parameter_then_the_environment(tmp_path, monkeypatch):
    explicit, from_env = tmp_path / "mine.sf2", tmp_path / "env.sf2"
    explicit.write_bytes(b"RIFF")
    from_env.write_bytes(b"RIFF")
    monkeypatch.setattr(audio, "STANDARD_SOUNDFONTS", ())
    for name in audio.SOUNDFONT_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert audio.find_soundfont() == audio.bundled_soundfont() or audio.bundled_soundfont() is None
    monkeypatch.setenv("MMMLIB_SOUNDFONT", str(from_env))
    assert audio.find_soundfont() == from_env
    assert audio.find_soundfont(str(explicit)) == explicit


def test_make_setup_installs_the_default_soundfont():
    font = audio.bundled_soundfont()
    if font is None and not os.environ.get("CI"):
        pytest.skip("pretty_midi (the default SoundFont) is not installed: `make setup` installs it")
    assert font is not None and font.name == "TimGM6mb.sf2" and font.stat().st_size > 1_000_000


def test_examples_render_and_embed_in_players(tmp_path):
    font = require_synthesizer()
    final = pd.DataFrame([
        {"gen_id": f"nomml0{i}_00000", "midi_file": str(write_loop(tmp_path / f"gen{i}.mid", 1)), "n_bars": 1,
         "has_loop": i == 2} for i in range(3)])
    wavs = audio.render_examples(final, tmp_path / "audio", 2, soundfont=str(font))
    assert len(wavs) == 2 and wavs[0].name == "nomml02_00000.wav", "loops come first"
    shown = audio.players(wavs)
    players = [item for item in shown if type(item).__name__ == "Audio"]
    assert len(players) == 2
    assert all("data:audio/x-wav;base64," in player._repr_html_() for player in players)
    assert audio.render_examples(final, tmp_path / "none", 0) == []
