"""The embedded synthetic corpus: seeded multitrack MIDI files with a ground-truth manifest.

Each file has a drums, bass, chords and/or lead track (GM programs varied per role), a time
signature among 4/4, 3/4 and 6/8, 70-160 BPM, 8-32 bars and a ticks-per-quarter among
:data:`TICKS_PER_QUARTER`. Each track has one timing style, whose NOMML is fixed by design:

============  =====  ======================================================================
style         NOMML  onsets
============  =====  ======================================================================
quarter       0      on the beats only
eighth        2      eighths, more off-beat eighths than on-beat onsets
sixteenth     4      sixteenths, more "e"/"a" onsets than beat and "and" onsets together
triplet       1      eighth triplets (levels 0, 3 and 1 in turn), neither 0 nor 3 a half
swing         1      swung eighths (on-beat, and 2/3 of the beat: level 1 on even beats,
                     3 on odd ones), neither 0 nor 3 a half
expressive    12     a performance: microtiming off every grid, velocity and duration jitter
============  =====  ======================================================================

Most tracks repeat a planted loop that :func:`mmmlib.data.loops.detect_loops` finds exactly
(its start and end ticks are in the manifest); through-composed and expressive tracks have
none. ``write_corpus(..., num_expressive_files=N)`` adds N *performed* files
(``expressive_NNNN.mid``), the ground truth of :mod:`mmmlib.data.expressive`: every track
is performed, and most repeat a planted pattern with microtiming and velocity variation
(an expressive loop, in the manifest); the default corpus is unchanged. Three modules,
one job each:

- :mod:`~mmmlib.data.synth.bars`: one bar: onsets balanced for the style's NOMML, pitches per role;
- :mod:`~mmmlib.data.synth.tracks`: one track: a planted loop, through-composed bars, or a performance;
- :mod:`~mmmlib.data.synth.corpus`: files and ``manifest.csv`` (:func:`write_corpus`,
  :func:`generate_score`) and the command line, ``python -m mmmlib synth OUT_DIR --num-files N --seed S``.
"""

from __future__ import annotations

from mmmlib.data.synth.bars import STYLE_NOMML, STYLES_BY_METER, Meter, Voice, bar_onsets
from mmmlib.data.synth.corpus import (
    LOOP_COLUMNS,
    MIN_EXPRESSIVE_TPQ,
    PROGRAMS,
    TICKS_PER_QUARTER,
    generate_performed_score,
    generate_score,
    main,
    write_corpus,
)

__all__ = [
    "LOOP_COLUMNS",
    "MIN_EXPRESSIVE_TPQ",
    "PROGRAMS",
    "STYLES_BY_METER",
    "STYLE_NOMML",
    "TICKS_PER_QUARTER",
    "Meter",
    "Voice",
    "bar_onsets",
    "generate_performed_score",
    "generate_score",
    "main",
    "write_corpus",
]
