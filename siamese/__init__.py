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
    "SiameseModel": ("siamese.modeling.network", "EmbeddingNet"),
    "EmbeddingNet": ("siamese.modeling.network", "EmbeddingNet"),
    "ModelConfig": ("siamese.modeling.config", "ModelConfig"),
    "Preprocessing": ("siamese.modeling.config", "Preprocessing"),
    "Calibration": ("siamese.modeling.config", "Calibration"),
    "load_model": ("siamese.modeling.pretrained", "load_model"),
    "save_model": ("siamese.modeling.pretrained", "save_model"),
    "verdict": ("siamese.evaluation.calibration", "verdict"),
    "Gallery": ("siamese.search.gallery", "Gallery"),
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'siamese' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
