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
