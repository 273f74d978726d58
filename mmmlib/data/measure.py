"""What 01 measures in one score: NOMML per track, exact loops, expressive loops and loopability.

Exact loops (:mod:`~mmmlib.data.loops`) are searched in every track. The expressive detector
(:mod:`~mmmlib.data.expressive`) runs on the tracks that ``expressive_tracks`` selects:

- ``"nomml12"`` (default): the expressive tracks (NOMML 12), where exact loops are rare;
- ``"nomml12_files"``: every track of a file that has a NOMML-12 track, as GigaMIDI v1.1 did;
- ``"all"``: every track; ``"none"``: no track.

With ``use_dataset_annotations``, a GigaMIDI v1.1 parquet row's own NOMML, exact and
expressive loops (:mod:`~mmmlib.data.annotations`) replace computing them, group by group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmmlib.core.errors import ConfigError
from mmmlib.data.expressive import DEFAULT_MODE, MODES, analyse_expressive_tracks
from mmmlib.data.loops import detect_loops
from mmmlib.data.nomml import EXPRESSIVE_LEVEL, score_nomml

if TYPE_CHECKING:
    from symusic import Score

    from mmmlib.data.annotations import DatasetAnnotations

EXPRESSIVE_TRACKS = ("nomml12", "nomml12_files", "all", "none")
LOOP_KINDS = ("exact", "expressive")


@dataclass(frozen=True)
class MeasureSettings:
    """Which tracks get the expressive detector, in which mode, and whether dataset annotations are used."""

    expressive_tracks: str = "nomml12"
    expressive_mode: str = DEFAULT_MODE
    use_dataset_annotations: bool = False

    def __post_init__(self) -> None:
        if self.expressive_tracks not in EXPRESSIVE_TRACKS:
            raise ConfigError("expressive_tracks", f"must be one of {EXPRESSIVE_TRACKS}, got {self.expressive_tracks!r}")
        if self.expressive_mode not in MODES:
            raise ConfigError("expressive_mode", f"must be one of {MODES}, got {self.expressive_mode!r}")
        if not isinstance(self.use_dataset_annotations, bool):
            raise ConfigError("use_dataset_annotations", f"must be True or False, got {self.use_dataset_annotations!r}")


@dataclass
class ScoreMeasures:
    """NOMML per track, loop rows of both kinds, and the loopability of each expressive track analysed."""

    nommls: list[int | None]
    loops: list[dict]  # track_idx, start_tick, end_tick, duration_beats, note_density, kind, loopability
    loopability: dict[int, float]


def expressive_track_indices(nommls: list[int | None], which: str) -> list[int]:
    """The tracks the expressive detector runs on (see the module notes for ``which``)."""
    if which == "all":
        return list(range(len(nommls)))
    if which == "nomml12_files":
        return list(range(len(nommls))) if EXPRESSIVE_LEVEL in nommls else []
    if which == "nomml12":
        return [i for i, level in enumerate(nommls) if level == EXPRESSIVE_LEVEL]
    return []


def measure_score(score: Score, settings: MeasureSettings, annotations: DatasetAnnotations | None = None) -> ScoreMeasures:
    """NOMML, exact loops and expressive loops of a score, from ``annotations`` where they have them.

    :param score: the file's score.
    :param settings: see :class:`MeasureSettings`.
    :param annotations: a GigaMIDI v1.1 row's annotations (None: compute everything).
    :return: the measures, loops ordered by kind, then track.
    """
    nommls = annotations.nommls if annotations and annotations.nommls is not None else score_nomml(score)
    exact = annotations.exact if annotations and annotations.exact is not None else detect_loops(score)
    if annotations and annotations.expressive is not None:
        expressive = annotations.expressive
    else:
        tracks = expressive_track_indices(nommls, settings.expressive_tracks)
        expressive = analyse_expressive_tracks(score, tracks, mode=settings.expressive_mode) if tracks else []
    rows = [{"track_idx": lp.track_idx, "start_tick": lp.start_tick, "end_tick": lp.end_tick,
             "duration_beats": float(lp.duration_beats), "note_density": float(lp.note_density),
             "kind": "exact", "loopability": float("nan")} for lp in exact]
    rows += [{"track_idx": lp.track_idx, "start_tick": lp.start_tick, "end_tick": lp.end_tick,
              "duration_beats": float(lp.duration_beats), "note_density": float(lp.note_density),
              "kind": "expressive", "loopability": float(lp.loopability)}
             for track in sorted(expressive, key=lambda t: t.track_idx) for lp in track.loops]
    return ScoreMeasures(list(nommls), rows, {t.track_idx: float(t.loopability) for t in expressive})
