"""Pair sampling for the pairwise loss: a chosen share of same-class pairs, the rest different."""

from __future__ import annotations

import torch


class PairSampler:
    """Draws same-class and different-class index pairs; the labels are grouped by class once, here.

    A training epoch builds one sampler and draws every batch from it, so no batch re-sorts the labels.
    """

    def __init__(self, labels: torch.Tensor):
        labels = labels.cpu()
        self.classes, self.counts = torch.unique(labels, return_counts=True)
        if len(self.classes) < 2:
            raise ValueError(f"pairs of different classes need at least 2 classes, got {len(self.classes)}")
        self.order = torch.argsort(labels, stable=True)  # image indices grouped by class
        self.starts = torch.cumsum(self.counts, 0) - self.counts  # (classes,) first position of each class
        self.pairable = torch.nonzero(self.counts >= 2).flatten()

    def sample(
        self, pair_count: int, positive_fraction: float = 0.5, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Index pairs (first, second) and a `same` flag, each of shape (pair_count,).

        round(pair_count * positive_fraction) pairs join two *different* images of one class; the
        rest join images of two different classes. An image is never paired with itself.
        """
        classes, counts, order, starts = self.classes, self.counts, self.order, self.starts
        positive_count = round(pair_count * positive_fraction)
        negative_count = pair_count - positive_count
        if positive_count and len(self.pairable) == 0:
            raise ValueError("same-class pairs need a class with at least 2 images")
        # Positives: a class (uniform over classes with 2+ images), then two distinct members.
        positive_class = self.pairable[torch.randint(len(self.pairable), (positive_count,), generator=generator)]
        size = counts[positive_class]
        first_offset = (torch.rand(positive_count, generator=generator) * size).long()
        second_offset = (torch.rand(positive_count, generator=generator) * (size - 1)).long()
        second_offset = second_offset + (second_offset >= first_offset).long()  # skip the first image
        positive_first = order[starts[positive_class] + first_offset]
        positive_second = order[starts[positive_class] + second_offset]

        # Negatives: two distinct classes, then one member of each.
        class_a = torch.randint(len(classes), (negative_count,), generator=generator)
        class_b = torch.randint(len(classes) - 1, (negative_count,), generator=generator)
        class_b = class_b + (class_b >= class_a).long()
        offset_a = (torch.rand(negative_count, generator=generator) * counts[class_a]).long()
        offset_b = (torch.rand(negative_count, generator=generator) * counts[class_b]).long()
        negative_first = order[starts[class_a] + offset_a]
        negative_second = order[starts[class_b] + offset_b]

        first = torch.cat([positive_first, negative_first])
        second = torch.cat([positive_second, negative_second])
        same = torch.cat([torch.ones(positive_count, dtype=torch.bool), torch.zeros(negative_count, dtype=torch.bool)])
        shuffle = torch.randperm(pair_count, generator=generator)
        return first[shuffle], second[shuffle], same[shuffle]


def sample_pairs(
    labels: torch.Tensor, pair_count: int, positive_fraction: float = 0.5, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One draw of `PairSampler(labels).sample(...)`: for a single batch of pairs."""
    return PairSampler(labels).sample(pair_count, positive_fraction, generator)
