"""01_data_prep runs end-to-end through papermill, and rejects bad parameters before any work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "01_data_prep.ipynb"


def run(tmp_path: Path, **params) -> Path:
    out = tmp_path / "01_data_prep.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), parameters=params, progress_bar=False, kernel_name="python3")
    return out


def test_01_runs_on_a_tiny_synthetic_corpus(tmp_path):
    output_dir = tmp_path / "data"
    run(tmp_path, input_path="synthetic", output_dir=str(output_dir), num_synth_files=6, workers=1)
    for name in ("files.parquet", "tracks.parquet", "loops.parquet", "rejects.csv", "params.json"):
        assert (output_dir / name).exists(), name
    for name in ("nomml_histogram.png", "loop_durations.png", "instruments.png"):
        assert (output_dir / "figures" / name).stat().st_size > 1000
    files = pd.read_parquet(output_dir / "files.parquet")
    rejects = pd.read_csv(output_dir / "rejects.csv")
    assert (len(files), len(rejects)) == (6, 0)  # all valid: of the 200, only synth_0176 is short
    loops = pd.read_parquet(output_dir / "loops.parquet")
    assert len(loops) > 0 and set(loops["kind"]) <= {"exact", "expressive"}
    tracks = pd.read_parquet(output_dir / "tracks.parquet")  # the expressive detector ran on the NOMML-12 tracks
    assert (tracks["loopability"].notna() == tracks["nomml"].eq(12).fillna(False)).all()


def test_01_on_a_folder_with_a_bad_file_and_shards(tmp_path):
    from tests.test_data import make_midi

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"f{i}.mid").write_bytes(make_midi(seed=i))
    (corpus / "broken.mid").write_bytes(b"MThd garbage")
    output_dir = tmp_path / "data"
    from mmmlib import data

    # shard 0 through the API, shard 1 through the notebook: both must write the same layout
    sources = data.shard_sources(data.list_sources(corpus), 0, 2)
    data.write_result(data.prepare(sources), data.shard_dir(output_dir, 0))
    run(tmp_path, input_path=str(corpus), output_dir=str(output_dir), shard_index=1, num_shards=2,
        make_figures=False)
    merged = data.merge_shards(output_dir, 2)
    assert merged.counts() == {"inputs": 5, "accepted": 4, "rejected": 1}


GOOD = dict(input_path="synthetic", output_dir="x", num_synth_files=2, min_bars=8, max_notes=1000, workers=1,
            shard_index=0, num_shards=1, seed=0, make_figures=True, expressive_tracks="nomml12",
            expressive_mode="default", use_dataset_annotations=False)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_bars": "8"}, "parameter `min_bars` must be int"),
        ({"min_bars": 8.0}, "parameter `min_bars` must be int"),
        ({"make_figures": 1}, "parameter `make_figures` must be bool"),
        ({"workers": 0}, "parameter `workers` must be >= 1"),
        ({"shard_index": 3, "num_shards": 2}, "parameter `shard_index` must be in [0, num_shards=2)"),
        ({"input_path": "/no/such/folder"}, "parameter `input_path` does not exist"),
        ({"expressive_tracks": "drums"}, "parameter `expressive_tracks` must be one of"),
        ({"expressive_mode": "exact"}, "parameter `expressive_mode` must be one of"),
        ({"use_dataset_annotations": "yes"}, "parameter `use_dataset_annotations` must be bool"),
    ],
)
def test_bad_parameters_are_named(params, message):
    from mmmlib.core.params import ParamError
    from mmmlib.data import DataPrepParams

    with pytest.raises(ParamError) as info:
        DataPrepParams(**{**GOOD, **params})
    assert message in str(info.value)


def test_01_bad_parameter_stops_the_notebook_before_any_work(tmp_path):
    output_dir = tmp_path / "data"
    with pytest.raises(pm.PapermillExecutionError) as info:
        run(tmp_path, output_dir=str(output_dir), num_synth_files=2, workers="2")
    assert "parameter `workers` must be int" in str(info.value)
    assert not (output_dir / "corpus").exists(), "no work may start before the parameters are valid"
