"""Exporting a trained model for serving without this package: ONNX, and a `torch.export` program.

Both take normalised float images (B, C, H, W), preprocessed as `config.json` says
(`siamese.data.datasets.to_float`), and give the embeddings (B, D). The batch size is free.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def _example_input(model, batch: int = 2) -> torch.Tensor:
    return torch.zeros(batch, model.in_channels, *model.image_size)  # (B, C, H, W)


def export_onnx(model, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write `model` as ONNX with a dynamic batch axis (input "images", output "embeddings"), checked by onnx."""
    # Optional dependency: onnx comes with the export extra.
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model = model.eval().cpu()
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        torch.onnx.export(
            model,
            (_example_input(model),),
            str(temporary),
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        onnx.checker.check_model(onnx.load(str(temporary)))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
        model.train(was_training)
    return path


def export_program(model, path: str | os.PathLike) -> Path:
    """Write `model` as a `torch.export` program (.pt2) with a dynamic batch dimension.

    Load it with `torch.export.load(path).module()`; it needs torch, not this package.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model = model.eval().cpu()
    batch = torch.export.Dim("batch", min=1, max=65_536)
    try:
        program = torch.export.export(model, (_example_input(model),), dynamic_shapes=({0: batch},))
        temporary = path.with_name(f".{path.stem}.tmp.pt2")  # torch.export.save wants the .pt2 suffix
        torch.export.save(program, str(temporary))
        os.replace(temporary, path)
    finally:
        model.train(was_training)
    return path
