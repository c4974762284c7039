"""Siamese-network image similarity: embedding networks, contrastive losses, evaluation, Hub I/O.

    from siamese import SiameseModel
    model = SiameseModel.from_pretrained("pretrained/faces")   # a model folder or a Hub repo id
    model.verify("a.png", "b.png")  # {'same': ..., 'distance': ..., 'threshold': ..., 'false_accept_rate': ...}

Public names are imported on first use, so `import siamese` stays cheap for the web app.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_PUBLIC = {
    "SiameseModel": ("siamese.models", "EmbeddingNet"),
    "EmbeddingNet": ("siamese.models", "EmbeddingNet"),
    "ModelConfig": ("siamese.model_config", "ModelConfig"),
    "Preprocessing": ("siamese.model_config", "Preprocessing"),
    "Calibration": ("siamese.model_config", "Calibration"),
    "load_model": ("siamese.hub", "load_model"),
    "save_model": ("siamese.hub", "save_model"),
    "verdict": ("siamese.calibration", "verdict"),
    "Gallery": ("siamese.gallery", "Gallery"),
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'siamese' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
