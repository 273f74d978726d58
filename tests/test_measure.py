"""01's loops: both kinds in loops.parquet, expressive tracks chosen by NOMML, GigaMIDI v1.1 annotations used as given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from symusic import Note, Score, TimeSignature, Track

from mmmlib import data
from mmmlib.core.errors import ConfigError
from mmmlib.core.midi import read_score
from mmmlib.data.annotations import has_dataset_annotations, read_dataset_annotations
from mmmlib.data.figures import loop_duration_histogram
from mmmlib.data.measure import MeasureSettings, expressive_track_indices


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """4 synthetic files and 3 performed ones (seed 0), prepared with the defaults."""
    folder = tmp_path_factory.mktemp("corpus")
    data.write_corpus(folder, num_files=4, seed=0, num_expressive_files=3)
    return folder, data.prepare(data.list_sources(folder))


def test_loops_parquet_holds_both_kinds(corpus, tmp_path):
    folder, result = corpus
    back = data.read_result(data.write_result(result, tmp_path))
    loops, tracks = back.loops, back.tracks
    assert list(loops.columns) == data.LOOPS_COLUMNS and list(tracks.columns) == data.TRACKS_COLUMNS
    assert set(loops["kind"]) == {"exact", "expressive"}
    assert loops.loc[loops["kind"] == "exact", "loopability"].isna().all()
    expressive = loops[loops["kind"] == "expressive"]
    assert expressive["loopability"].notna().all()
    # the expressive detector ran on the NOMML-12 tracks, and only there (default "nomml12")
    assert (tracks["loopability"].notna() == tracks["nomml"].eq(12).fillna(False)).all()
    by_track = tracks.set_index(["md5", "track_idx"])
    assert (by_track.loc[list(zip(expressive["md5"], expressive["track_idx"], strict=True)), "loopability"].to_numpy()
            == expressive["loopability"].to_numpy()).all()
    counts = loops.groupby(["md5", "track_idx"]).size()
    assert (by_track["n_loops"] == counts.reindex(by_track.index, fill_value=0)).all()
    # the rows are the detector's loops, with the track's own loopability
    row = back.files[back.files["md5"] == expressive["md5"].iloc[0]].iloc[0]
    score = read_score(row["path"], row["row"])
    mine = expressive[expressive["md5"] == row["md5"]]
    found = data.detect_expressive_loops(score, tracks=sorted(set(mine["track_idx"])))
    assert [(lp.track_idx, lp.start_tick, lp.end_tick) for lp in found] == list(
        zip(mine["track_idx"], mine["start_tick"], mine["end_tick"], strict=True))


@pytest.mark.parametrize(("which", "expected"), [("none", []), ("all", [0, 1, 2]), ("nomml12", [1]),
                                                  ("nomml12_files", [0, 1, 2])])
def test_expressive_track_selection(which, expected):
    assert expressive_track_indices([4, 12, None], which) == expected
    assert expressive_track_indices([4, 0, None], which) == (expected if which == "all" else [])


def test_expressive_settings_reach_the_tables(corpus):
    folder, default = corpus
    sources = data.list_sources(folder)
    none = data.prepare(sources, expressive_tracks="none")
    assert set(none.loops["kind"]) == {"exact"} and none.tracks["loopability"].isna().all()
    everything = data.prepare(sources, expressive_tracks="all", expressive_mode="reference")
    assert everything.tracks["loopability"].notna().all()
    exact = default.loops[default.loops["kind"] == "exact"].reset_index(drop=True)
    pd.testing.assert_frame_equal(none.loops.reset_index(drop=True), exact)
    with pytest.raises(ConfigError, match="expressive_tracks"):
        data.prepare(sources, expressive_tracks="drums")
    with pytest.raises(ConfigError, match="expressive_mode"):
        MeasureSettings(expressive_mode="exact")


def test_figures_show_both_kinds(corpus):
    _, result = corpus
    fig = loop_duration_histogram(result.loops, None, result.tracks)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert [label.split(" ")[0] for label in labels] == ["exact", "expressive"]
    assert len(fig.axes) == 2 and "Loopability" in fig.axes[1].get_title()


# ------------------------------------------------------------------ GigaMIDI v1.1 annotations
def two_track_midi() -> bytes:
    """Two piano tracks (program 0: bars 0-3, then bars 4-7) and a bass (8 bars), a note on every beat."""
    score = Score(480)
    score.time_signatures.append(TimeSignature(0, 4, 4))
    for program, pitch, first_bar, end_bar in ((0, 60, 0, 4), (0, 72, 4, 8), (33, 36, 0, 8)):
        track = Track(program=program)
        for beat in range(first_bar * 4, end_bar * 4):
            track.notes.append(Note(beat * 480, 240, pitch + beat % 3, 80))
        score.tracks.append(track)
    return score.dumps_midi()


def giga_table(as_text: bool) -> pa.Table:
    """A GigaMIDI v1.1-style table: two rows with annotations (one written as text), one without."""
    def cell(value):
        return str(value) if as_text else value

    rows = {
        "md5": ["a", "b"],
        "music": [two_track_midi(), data.generate_score(np.random.default_rng(0))[0].dumps_midi()],
        "NOMML": [cell([12, 3, 7]), None],
        "loop_track_idx": [cell([2]), cell([])],
        "loop_instrument_type": [cell(["Bass"]), cell([])],
        "loop_start": [cell([1920]), cell([])],
        "loop_end": [cell([3840]), cell([])],
        "loop_duration_beats": [cell([4.0]), cell([])],
        "loop_note_density": [cell([1.0]), cell([])],
        "MIDI_program_number__expressive_": [cell([0, 0]), None],
        "instrument_group__expressive_": [cell(["Piano", "Piano"]), None],
        "start_tick__expressive_": [cell([0, 9600]), None],
        "end_tick__expressive_": [cell([1920, 11520]), None],
        "duration_beats__expressive_": [cell([4.0, 4.0]), None],
        "note_density__expressive_": [cell([1.0, 1.0]), None],
        "loopability__expressive_": [cell([0.5, 0.25]), None],
    }
    return pa.table(rows)


@pytest.mark.parametrize("as_text", [False, True], ids=["arrow lists", "text lists"])
def test_dataset_annotations_replace_computing(tmp_path, as_text):
    pq.write_table(giga_table(as_text), tmp_path / "giga.parquet")
    sources = data.list_sources(tmp_path / "giga.parquet")
    assert has_dataset_annotations(str(tmp_path / "giga.parquet"))
    result = data.prepare(sources, use_dataset_annotations=True)
    first = result.files.iloc[0]["md5"]
    tracks = result.tracks[result.tracks["md5"] == first]
    loops = result.loops[result.loops["md5"] == first]
    assert tracks["nomml"].tolist() == [12, 3, 7]  # the column's levels, not measured ones (0)
    assert loops[["track_idx", "start_tick", "end_tick", "kind"]].values.tolist() == [
        [2, 1920, 3840, "exact"],
        [0, 0, 1920, "expressive"],  # program 0 is tracks 0 and 1: the one with notes in the loop's span
        [1, 9600, 11520, "expressive"],
    ]
    assert tracks["loopability"].tolist()[:2] == [0.5, 0.25] and np.isnan(tracks["loopability"].iloc[2])
    # the second row has no annotations (None, empty lists): NOMML computed, its loops as given (none)
    second = result.tracks[result.tracks["md5"] != first]
    computed = data.prepare(sources[1:])
    assert second["nomml"].tolist() == computed.tracks["nomml"].tolist()
    assert (result.loops["md5"] != first).sum() == 0
    # without the flag, everything is measured
    measured = data.prepare(sources[:1])
    assert measured.tracks["nomml"].tolist() == [0, 0, 0]


def test_dataset_annotations_need_their_columns(tmp_path):
    table = giga_table(False).drop_columns(["loop_end", "NOMML"])  # a group with a column missing is ignored
    pq.write_table(table, tmp_path / "partial.parquet")
    score = Score.from_midi(two_track_midi())
    found = read_dataset_annotations(str(tmp_path / "partial.parquet"), 0, score)
    assert found.nommls is None and found.exact is None
    assert [(t.track_idx, t.loopability) for t in found.expressive] == [(0, 0.5), (1, 0.25)]
    pq.write_table(pa.table({"music": [two_track_midi()]}), tmp_path / "plain.parquet")
    assert not has_dataset_annotations(str(tmp_path / "plain.parquet"))
    plain = data.prepare(data.list_sources(tmp_path / "plain.parquet"), use_dataset_annotations=True)
    assert plain.tracks["nomml"].tolist() == [0, 0, 0]
