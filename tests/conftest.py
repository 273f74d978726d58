"""Shared fixtures: small MIDI files the tests write, and the real corpus when it is there."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_CORPUS = REPO_ROOT.parent / "shared" / "corpora" / "gigamidi-tests"


@pytest.fixture(scope="session")
def real_corpus() -> Path:
    """The 30 real MIDI files beside the checkout; tests using it skip when it is absent."""
    if not REAL_CORPUS.is_dir():
        pytest.skip(f"real corpus not found at {REAL_CORPUS}")
    return REAL_CORPUS


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """A 24-file synthetic corpus (with manifest.csv), written once per test session."""
    from mmmlib.data import write_corpus

    folder = tmp_path_factory.mktemp("synth")
    write_corpus(folder, num_files=24, seed=1)
    return folder
