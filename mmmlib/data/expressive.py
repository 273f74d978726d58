"""Expressive loop detection: loops that repeat up to microtiming and dynamics (GigaMIDI v1.1).

Exact loops (:mod:`~mmmlib.data.loops`) need notes that repeat tick for tick; a performed
(NOMML 12) track almost never has one. GigaMIDI v1.1 adds 2.3M *expressive* loops found
by a soft detector: elements (note sets and barlines) are compared by a similarity of
pitches, velocities and time, a soft-count correlation matrix counts runs of similar
elements from barline to barline (:mod:`~mmmlib.data.soft_matrix`), and each track gets
a *loopability* score, ``0.7 max(C) / n + 0.3 sum(C) / (n (n - 1) / 2)``. Two modes:

``reference``
    GigaMIDI v1.1's loops exactly, quirks included (:mod:`~mmmlib.data.expressive_reference`):
    bars every 4th quarter whatever the time signature, the time term on raw start ticks, a
    similarity that equal velocities satisfy without a shared pitch; every track is melodic
    (tau 0.3, loops of >= 1 beat) as the notebook ran, unless ``use_drum_settings`` gives
    drum tracks the drum settings it meant (tau 0.1, 0.5 beat).
``default``
    The quirks fixed (:mod:`~mmmlib.data.expressive_default`): bars and beats from the time
    signatures, time compared as the position in the bar, a similarity that needs a shared
    pitch, and a loop only where the whole loop is played again. Performed note sets do not
    align one to one, so it compares bars: each note looks for a same-pitch counterpart near
    its place in the other bar. On the expressive loops planted in the synthetic corpus
    (:func:`mmmlib.data.synth.write_corpus` with ``num_expressive_files``) it finds all of
    them with precision 0.98-0.99, where the reference finds 1-4%; ``docs/concepts/loops.md``
    has the numbers. It is the default.

``python -m mmmlib loops --expressive [--mode reference|default] FILE...`` prints one JSON
object per loop: the fields of an exact loop plus the track's ``loopability``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from mmmlib.core.errors import ConfigError
from mmmlib.data.expressive_default import default_track_loops
from mmmlib.data.expressive_reference import reference_grid, reference_track_loops
from mmmlib.data.loop_shared import bars_and_beats

if TYPE_CHECKING:
    from collections.abc import Iterable

    from symusic import Score

MODES = ("reference", "default")
DEFAULT_MODE = "default"
# Per mode: (melodic, drums) similarity thresholds, and the loop rules of each kind of track.
TAUS = {"reference": (0.3, 0.1), "default": (0.85, 0.85)}
MIN_BEATS = {"melodic": 1.0, "drums": 0.5}  # also the reference's min_rep_beats


@dataclass(frozen=True)
class ExpressiveLoop:
    """One expressive loop: the fields of an exact :class:`~mmmlib.data.loops.Loop` and the track's loopability."""

    track_idx: int
    start_tick: int
    end_tick: int
    duration_beats: float
    note_density: float
    loopability: float


@dataclass(frozen=True)
class ExpressiveTrack:
    """The expressive analysis of one track: its loopability score and its loops."""

    track_idx: int
    loopability: float
    loops: list[ExpressiveLoop] = field(default_factory=list)


@dataclass(frozen=True)
class ExpressiveOptions:
    """Settings of the expressive detector; ``None`` takes the mode's value."""

    mode: str = DEFAULT_MODE  # "reference" (GigaMIDI v1.1) or "default" (quirks fixed)
    tau: float | None = None  # similarity threshold of melodic tracks (reference 0.3)
    tau_drums: float | None = None  # of drum tracks (reference 0.1)
    max_beats: float = 32.0  # longest loop
    use_drum_settings: bool | None = None  # drum tracks get the drum settings (reference: False, as it ran)
    max_shift_quarters: float = 0.1875  # default mode: largest position difference of two counterpart notes
    time_scale_quarters: float = 0.2  # default mode: the time term is exp(-|position difference| / this)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError("mode", f"must be one of {MODES}, got {self.mode!r}")
        for name in ("tau", "tau_drums"):
            value = getattr(self, name)
            if value is not None and not 1e-6 <= value <= 1.0:
                raise ConfigError(name, f"must be in [1e-6, 1], got {value}")
        if not self.max_beats >= MIN_BEATS["melodic"]:
            raise ConfigError("max_beats", f"must be >= {MIN_BEATS['melodic']}, got {self.max_beats}")
        if not 0 <= self.max_shift_quarters < 1:
            raise ConfigError("max_shift_quarters", f"must be in [0, 1), got {self.max_shift_quarters}")
        if not self.time_scale_quarters > 0:
            raise ConfigError("time_scale_quarters", f"must be > 0, got {self.time_scale_quarters}")

    def rules(self, is_drum: bool) -> tuple[float, float]:
        """``(tau, min_beats)`` for a track."""
        use_drums = is_drum and (self.use_drum_settings if self.use_drum_settings is not None
                                 else self.mode != "reference")
        melodic_tau, drum_tau = TAUS[self.mode]
        if use_drums:
            return (self.tau_drums if self.tau_drums is not None else drum_tau), MIN_BEATS["drums"]
        return (self.tau if self.tau is not None else melodic_tau), MIN_BEATS["melodic"]


def analyse_expressive_tracks(score: Score, tracks: Iterable[int] | None = None, **options) -> list[ExpressiveTrack]:
    """Loopability and expressive loops of the given tracks of a score.

    :param score: tick-time score (as read by ``symusic.Score(path)``); not modified.
    :param tracks: indices of the tracks to analyse (default: all, in order).
    :param options: fields of :class:`ExpressiveOptions` (e.g. ``mode="reference"``).
    :return: one entry per analysed track that the mode can measure (the reference skips
        tracks with fewer than two elements; both skip every track of a score without bars).
    :raises ConfigError: on an unknown or out-of-range option.
    """
    opts = ExpressiveOptions(**options)
    indices = range(len(score.tracks)) if tracks is None else list(tracks)
    if opts.mode == "reference":
        grid = reference_grid(int(score.end()), int(score.ticks_per_quarter))
    else:
        grid = bars_and_beats(score)
    if grid is None:
        return []
    bars, beats = grid
    results = []
    for idx in indices:
        track = score.tracks[idx]
        tau, min_beats = opts.rules(bool(track.is_drum))
        if opts.mode == "reference":
            found = reference_track_loops(track, bars, beats, tau, min_beats, opts.max_beats)
        else:
            found = default_track_loops(track, bars, beats, int(score.ticks_per_quarter), tau, min_beats,
                                        opts.max_beats, opts.max_shift_quarters, opts.time_scale_quarters)
        if found is None:
            continue
        rows, runs = found
        score_value = float(runs.loopability())
        loops = [ExpressiveLoop(idx, start, end, float(dur), float(density), score_value)
                 for start, end, dur, density in rows]
        results.append(ExpressiveTrack(idx, score_value, loops))
    return results


def detect_expressive_loops(score: Score, tracks: Iterable[int] | None = None, **options) -> list[ExpressiveLoop]:
    """Expressive loops of every track (or of ``tracks``) of a score.

    :param score: tick-time score; not modified.
    :param tracks: indices of the tracks to analyse (default: all).
    :param options: fields of :class:`ExpressiveOptions`.
    :return: the loops, by track, each with its track's loopability.
    """
    return [loop for result in analyse_expressive_tracks(score, tracks, **options) for loop in result.loops]


def print_expressive_loops(paths: list[str], mode: str) -> int:
    """``mmmlib loops --expressive``: one JSON object per loop on stdout; unreadable files on stderr.

    :param paths: MIDI files.
    :param mode: ``reference`` or ``default``.
    :return: the exit status: 0, or 1 when some file could not be read.
    """
    from mmmlib.core.midi import read_midi_files

    ExpressiveOptions(mode=mode)  # a bad mode stops before any file is read
    failed: list[str] = []
    for path, score in read_midi_files(paths, failed):
        for loop in detect_expressive_loops(score, mode=mode):
            print(json.dumps({"file": path, **asdict(loop)}))
    return 1 if failed else 0
