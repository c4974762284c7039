"""Shared fixtures: where the real data lives when this checkout sits beside ../shared, and one temporary folder for
what the app writes during the run (Gradio's uploads, previews), removed at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Set before any test module imports the app (demo.media reads them on import); servers the tests start inherit them.
APP_FOLDERS = {"GRADIO_TEMP_DIR": "gradio", "SIAMESE_PREVIEW_DIR": "previews"}
_created: list[Path] = []


def pytest_configure(config):
    unset = {name: part for name, part in APP_FOLDERS.items() if not os.environ.get(name)}
    if unset:
        folder = Path(tempfile.mkdtemp(prefix="siamese-tests-"))
        _created.append(folder)
        for name, part in unset.items():
            os.environ[name] = str(folder / part)


def pytest_unconfigure(config):
    for folder in _created:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _deterministic():
    """Every test starts from the same global random state."""
    torch.manual_seed(0)


@pytest.fixture
def mnist_root() -> Path:
    root = SHARED_DATA / "mnist"
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST data not found at {root} (only present beside the project's shared folder)")
    return root


@pytest.fixture
def att_faces_root() -> Path:
    root = SHARED_DATA / "att_faces"
    if not (root / "s1").is_dir():
        pytest.skip(f"AT&T faces not found at {root} (only present beside the project's shared folder)")
    return root


@pytest.fixture(scope="session")
def real_faces_root() -> Path:
    """Real colour photos: people/<name>/ (one face each) and scenes/ (2-3 faces), beside the project only."""
    root = SHARED_DATA / "real_faces"
    if not (root / "people").is_dir() or not (root / "scenes").is_dir():
        pytest.skip(f"real face photos not found at {root} (only present beside the project's shared folder)")
    return root


@pytest.fixture(scope="session")
def noise_photo(tmp_path_factory) -> Path:
    """A 300x300 photo of random colour noise: usable as an image, with no face in it."""
    path = tmp_path_factory.mktemp("noise") / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def similarity_app(tmp_path_factory):
    """The app's handlers over two untrained stand-in models (digits and faces), calibrated by the library."""
    import app
    from scripts.standin_models import make_standin

    folder = tmp_path_factory.mktemp("models")
    specs = [
        app.ModelSpec("mnist", str(make_standin(folder / "mnist", "digits"))),
        app.ModelSpec("faces", str(make_standin(folder / "faces", "faces"))),
    ]
    return app.SimilarityApp(specs)
