"""Batch augmentation on tensors: one random affine warp per image, drawn in a single call.

Running on the whole batch on the training device replaces per-sample PIL transforms, which
cost more than the model itself on a small CPU.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional

from siamese._registry import Registry


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 10.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
    shear: float = 0.0,
    horizontal_flip: bool = False,
    fill: str = "zeros",
) -> torch.Tensor:
    """Warp float images (B, C, H, W) by per-image random rotation, shift, scale, shear and flip.

    `translate` is a fraction of the image size. Random numbers come from `generator` on its own
    device: a CUDA generator draws the warps on the GPU with no host transfer, a CPU generator
    draws them on the CPU (and they are copied over). Areas uncovered by the warp are
    filled with zeros (`fill="zeros"`, black: digits' background) or with each image's own
    background (`fill="border"`: the per-channel median of its outermost pixel ring).
    """
    if fill not in ("zeros", "border"):
        raise ValueError(f"fill must be 'zeros' or 'border', got {fill!r}")
    batch = images.shape[0]
    uniform = torch.rand(batch, 6, generator=generator, device=generator.device)  # (B, 6) in [0, 1)
    angle = (uniform[:, 0] * 2 - 1) * math.radians(degrees)  # (B,)
    zoom = scale[0] + uniform[:, 1] * (scale[1] - scale[0])  # (B,)
    shift_x = (uniform[:, 2] * 2 - 1) * translate * 2  # (B,), grid units span 2 per image
    shift_y = (uniform[:, 3] * 2 - 1) * translate * 2  # (B,)
    skew = (uniform[:, 4] * 2 - 1) * math.radians(shear)  # (B,)
    flip = torch.where((uniform[:, 5] < 0.5) & horizontal_flip, -1.0, 1.0)  # (B,)

    cos, sin = torch.cos(angle), torch.sin(angle)
    # The grid maps output positions to input positions, so the inverse zoom is applied. One stack,
    # not six slice assignments: fewer kernel launches on a GPU, where small steps are launch-bound.
    theta = torch.stack(
        [cos / zoom * flip, (-sin + torch.tan(skew)) / zoom, shift_x, sin / zoom * flip, cos / zoom, shift_y], dim=1
    ).view(batch, 2, 3)  # (B, 2, 3)
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = functional.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    background = border_background(images) if fill == "border" else torch.zeros_like(images[:, :, :1, :1])
    # Warping (image - background) with zero padding, then adding the background back, fills the
    # uncovered area with the background in the same single grid_sample call.
    warped = functional.grid_sample(
        images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return warped + background


def border_background(images: torch.Tensor) -> torch.Tensor:
    """Each image's background colour, (B, C, 1, 1): the median of its outermost ring of pixels."""
    ring = torch.cat(
        [images[:, :, 0, :], images[:, :, -1, :], images[:, :, 1:-1, 0], images[:, :, 1:-1, -1]], dim=2
    )  # (B, C, 2W + 2H - 4)
    return ring.median(dim=2).values[:, :, None, None]  # (B, C, 1, 1)


def random_brightness_contrast(images: torch.Tensor, generator: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Scale contrast and shift brightness per image by up to `strength` (for photographs, not digits)."""
    batch = images.shape[0]
    uniform = torch.rand(batch, 2, generator=generator, device=generator.device)  # (B, 2)
    uniform = uniform.to(images.device, images.dtype)
    contrast = 1 + (uniform[:, 0] * 2 - 1) * strength  # (B,)
    brightness = (uniform[:, 1] * 2 - 1) * strength  # (B,)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (images - mean) * contrast.view(-1, 1, 1, 1) + mean + brightness.view(-1, 1, 1, 1)


AUGMENTATIONS: Registry = Registry("augment")


@AUGMENTATIONS.register("none", "no augmentation")
def _no_augmentation(images: torch.Tensor, generator: torch.Generator, horizontal_flip: bool) -> torch.Tensor:
    return images


@AUGMENTATIONS.register("digits", "small rotations, shifts, scaling and shear on a black background")
def _digit_warps(images: torch.Tensor, generator: torch.Generator, horizontal_flip: bool) -> torch.Tensor:
    return random_affine(images, generator, degrees=12.0, translate=0.08, scale=(0.85, 1.1), shear=10.0)


@AUGMENTATIONS.register("faces", "small warps filled with each image's background, brightness and contrast")
def _photo_warps(images: torch.Tensor, generator: torch.Generator, horizontal_flip: bool) -> torch.Tensor:
    warped = random_affine(
        images, generator, degrees=8.0, translate=0.06, scale=(0.9, 1.1), horizontal_flip=horizontal_flip,
        fill="border",
    )  # fmt: skip
    return random_brightness_contrast(warped, generator, strength=0.2)


def augment_batch(
    images: torch.Tensor, kind: str, generator: torch.Generator, horizontal_flip: bool = False
) -> torch.Tensor:
    """Random warps of float images in [0, 1], (B, C, H, W).

    Digits are white on black, so black fills the borders; photos and folder images are filled with
    each image's own background colour (its border's median), so no black wedges appear.
    """
    return AUGMENTATIONS.get(kind)(images, generator, horizontal_flip)
