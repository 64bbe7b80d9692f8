"""Shared fixtures: the reference fixture folder and a small generated sample dataset."""

import shutil
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


@pytest.fixture(scope="module")
def pristine(request, tmp_path_factory) -> Path:
    """The sample data of the requesting module (its ``PATCHES``, seed ``PRISTINE_SEED``), made once."""
    from data.sample import generate_sample_dataset

    seed = getattr(request.module, "PRISTINE_SEED", 0)
    patches = getattr(request.module, "PATCHES", SAMPLE_PATCHES)
    return generate_sample_dataset(tmp_path_factory.mktemp("pristine"), seed=seed, patches=patches)


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    """A private copy of the module's sample data that a test may corrupt."""
    return Path(shutil.copytree(pristine, tmp_path / "data"))
