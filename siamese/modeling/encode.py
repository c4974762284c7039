"""Embedding any images a user has: file paths, PIL images, numpy arrays or tensors, in the model's own form.

Each input goes through the preprocessing saved with the model (size, channels, digit
centring), exactly as the app does, so `encode` gives the embeddings the thresholds were set on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from siamese.data.datasets import to_float
from siamese.data.images import ImageError, NoFaceError, prepare_image
from siamese.runtime.precision import autocast_context


def _as_list(images) -> list:
    """One image or many -> a list of single images (a 4-D tensor or array is a batch)."""
    if isinstance(images, str | Path) or not hasattr(images, "__len__"):
        return [images]
    if isinstance(images, torch.Tensor | np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    return list(images)


def _tensor_to_array(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) or (H, W) tensor, uint8 or float in [0, 1], -> an (H, W) or (H, W, C) uint8 array."""
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
    if image.ndim != 2 and not (image.ndim == 3 and image.shape[2] in (3, 4)):
        raise ImageError(f"expected a tensor of shape (C, H, W) with C in 1, 3, 4, or (H, W); got {tuple(image.shape)}")
    array = image.detach().cpu()
    if array.dtype != torch.uint8:
        array = (array.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return array.numpy()


def prepare_images(
    images, preprocessing: dict, image_size: tuple[int, int], channels: int, skip_no_face: bool = False
) -> torch.Tensor | tuple[torch.Tensor, list[int]]:
    """Any supported images -> uint8 (N, C, H, W) in the model's input form.

    uint8 tensors that already have the model's shape are taken as prepared; everything else is
    decoded and brought to the model's form by `siamese.data.images.prepare_image`. A photo in which a face
    model finds no face raises NoFaceError, unless `skip_no_face`: then it is left out, and the positions of the
    images kept come back too, as (images (K, C, H, W), kept).
    """
    prepared, kept = [], []
    for position, image in enumerate(_as_list(images)):
        name = str(image) if isinstance(image, str | Path) else f"image {position}"
        if isinstance(image, torch.Tensor):
            if image.dtype == torch.uint8 and tuple(image.shape) == (channels, *image_size):
                prepared.append(image.cpu())
                kept.append(position)
                continue
            image = _tensor_to_array(image)
        try:
            prepared.append(prepare_image(image, preprocessing, name=name))
        except NoFaceError:
            if not skip_no_face:
                raise
            continue
        kept.append(position)
    if skip_no_face:
        batch = torch.stack(prepared) if prepared else torch.zeros(0, channels, *image_size, dtype=torch.uint8)
        return batch, kept  # (K, C, H, W)
    if not prepared:
        raise ImageError("no images were given")
    return torch.stack(prepared)  # (N, C, H, W)


def embed_prepared(
    model: nn.Module,
    images: torch.Tensor,
    preprocessing: dict,
    batch_size: int = 1024,
    precision: str = "fp32",
    on_device: bool = False,
) -> torch.Tensor:
    """Embed uint8 images (N, C, H, W) in batches on the model's device; float32 (N, D) on the CPU,
    or left on the model's device with `on_device` (evaluation then never copies them back)."""
    device = next(model.parameters()).device
    was_training = model.training
    # eval() and train() set a flag on every module, ~0.5 ms for small nets: skip them when nothing is in training
    # mode (the app embeds one or two images a request).
    switch_mode = any(module.training for module in model.modules())
    if switch_mode:
        model.eval()
    chunks = []
    with torch.inference_mode(), autocast_context(device, precision):
        for start in range(0, images.shape[0], batch_size):
            batch = to_float(images[start : start + batch_size].to(device), preprocessing)  # (b, C, H, W)
            output = model(batch).float()  # (b, D)
            chunks.append(output if on_device else output.cpu())
    if switch_mode:
        model.train(was_training)
    if not chunks:
        return torch.zeros(0, getattr(model, "embedding_dim", 0), device=device if on_device else "cpu")
    return torch.cat(chunks)  # (N, D)
