"""Embedding any images a user has: file paths, PIL images, numpy arrays or tensors, in the model's own form.

Each input goes through the preprocessing saved with the model (size, channels, digit
centring), exactly as the app does, so `encode` gives the embeddings the thresholds were set on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from siamese.images import ImageError, prepare_image


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


def prepare_images(images, preprocessing: dict, image_size: tuple[int, int], channels: int) -> torch.Tensor:
    """Any supported images -> uint8 (N, C, H, W) in the model's input form.

    uint8 tensors that already have the model's shape are taken as prepared; everything else is
    decoded and brought to the model's form by `siamese.images.prepare_image`.
    """
    prepared = []
    for position, image in enumerate(_as_list(images)):
        name = str(image) if isinstance(image, str | Path) else f"image {position}"
        if isinstance(image, torch.Tensor):
            if image.dtype == torch.uint8 and tuple(image.shape) == (channels, *image_size):
                prepared.append(image.cpu())
                continue
            image = _tensor_to_array(image)
        prepared.append(prepare_image(image, preprocessing, name=name))
    if not prepared:
        raise ImageError("no images were given")
    return torch.stack(prepared)  # (N, C, H, W)


def encode(model, images, batch_size: int = 256, device: str | torch.device | None = None) -> torch.Tensor:
    """Embeddings (N, D) float32 on the CPU, in eval mode (the model's mode is restored)."""
    from siamese.evaluation import embed

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if device is not None:
        model = model.to(device)
    batch = prepare_images(images, model.preprocessing, model.image_size, model.in_channels)  # (N, C, H, W)
    return embed(model, batch, model.preprocessing, batch_size=batch_size)  # (N, D)
