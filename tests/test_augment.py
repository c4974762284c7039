"""Batch augmentation: the uncovered area takes each image's own background, and the warp is unchanged."""

from __future__ import annotations

import pytest
import torch

from siamese.data.augment import border_background, random_affine


def light_images_with_a_dark_mark(batch: int = 4) -> torch.Tensor:
    images = torch.full((batch, 3, 20, 16), 0.9)  # light paper
    images[:, 1] = 0.8  # a tinted background: the fill must be per channel
    images[:, :, 8:12, 6:10] = 0.1  # a dark glyph in the middle
    return images


def test_border_fill_uses_each_images_own_background_not_black():
    images = light_images_with_a_dark_mark()
    images[1] = 1.0 - images[1]  # one dark image with a light mark: its background is dark
    background = border_background(images)  # (B, C, 1, 1)
    assert background[0, :, 0, 0].tolist() == pytest.approx([0.9, 0.8, 0.9])
    assert background[1, :, 0, 0].tolist() == pytest.approx([0.1, 0.2, 0.1])
    generator = torch.Generator().manual_seed(0)
    warped = random_affine(images, generator, degrees=30.0, translate=0.2, scale=(0.7, 0.8), fill="border")
    # With a strong shrink, the corners are uncovered: they carry the image's background, never black.
    for index in range(len(images)):
        torch.testing.assert_close(warped[index, :, 0, 0], background[index, :, 0, 0], atol=1e-5, rtol=0)
    zero_filled = random_affine(
        images, torch.Generator().manual_seed(0), degrees=30.0, translate=0.2, scale=(0.7, 0.8), fill="zeros"
    )
    assert float(zero_filled[0, :, 0, 0].abs().max()) < 1e-6  # the old behaviour: black corners


def test_border_fill_moves_the_image_exactly_as_the_zero_fill_does():
    # Independent check: filling with the background b equals warping (x - b) with zeros and adding b.
    images = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    background = border_background(images)
    arguments = {"degrees": 15.0, "translate": 0.1, "scale": (0.8, 1.2), "shear": 5.0}
    filled = random_affine(images, torch.Generator().manual_seed(5), fill="border", **arguments)
    shifted = random_affine(images - background, torch.Generator().manual_seed(5), fill="zeros", **arguments)
    torch.testing.assert_close(filled, shifted + background)


def test_an_unknown_fill_is_refused():
    with pytest.raises(ValueError, match="fill must be"):
        random_affine(torch.zeros(1, 1, 4, 4), torch.Generator(), fill="black")
