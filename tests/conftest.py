"""Shared fixtures: the reference fixture folder and a small generated sample dataset."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Enough patches for every target class to dominate one validation and one test patch.
SAMPLE_PATCHES = {"sen12ms": 4, "validation": 8, "test": 8}


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """``tests/fixtures`` (outputs of the original implementation)."""
    return FIXTURES


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """A sample dataset generated once per session (``data.sample``, seed 0, small)."""
    from data.sample import generate_sample_dataset

    return generate_sample_dataset(tmp_path_factory.mktemp("sample_data"), seed=0, patches=SAMPLE_PATCHES)
