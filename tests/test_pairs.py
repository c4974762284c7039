"""Pair sampling: the asked balance, never an image with itself, negatives truly different."""

from __future__ import annotations

import pytest
import torch

from siamese.data.pairs import sample_pairs


@pytest.mark.parametrize("fraction", [0.5, 0.25, 1.0])
def test_balance_and_validity(fraction):
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # class 3 has one image: no positive from it
    generator = torch.Generator().manual_seed(0)
    first, second, same = sample_pairs(labels, 400, positive_fraction=fraction, generator=generator)
    assert first.shape == second.shape == same.shape == (400,)
    assert int(same.sum()) == round(400 * fraction)
    assert torch.all(first != second)
    assert torch.equal(labels[first] == labels[second], same)


def test_every_class_with_two_images_gets_positives_and_is_seeded():
    labels = torch.arange(5).repeat_interleave(3)
    one = sample_pairs(labels, 500, generator=torch.Generator().manual_seed(1))
    two = sample_pairs(labels, 500, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    first, _, same = one
    assert set(labels[first[same]].tolist()) == set(range(5))


def test_unusable_labels_give_clear_errors():
    with pytest.raises(ValueError, match="at least 2 classes"):
        sample_pairs(torch.zeros(5, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="at least 2 images"):
        sample_pairs(torch.arange(4), 10)
