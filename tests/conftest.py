"""Shared fixtures: where the real data lives when this checkout sits beside ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
