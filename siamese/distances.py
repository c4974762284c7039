"""Distances between embeddings: the one place that decides distance versus similarity."""

from __future__ import annotations

import torch


def pairwise_distances(embeddings: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances between every row of `embeddings` and every row of `others`.

    Computed as sqrt(|a|^2 + |b|^2 - 2ab) clamped at zero, so the gradient stays finite on the
    diagonal (torch.cdist's gradient is NaN at a distance of exactly zero).
    """
    others = embeddings if others is None else others
    squared = squared_pairwise_distances(embeddings, others)  # (N, M)
    # A tiny floor keeps sqrt's gradient finite where two embeddings coincide.
    return squared.clamp_min(1e-12).sqrt() * (squared > 0)


def squared_pairwise_distances(embeddings: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, (N, D) x (M, D) -> (N, M), never negative."""
    embeddings = embeddings.float()
    others = others.float()
    norms = embeddings.pow(2).sum(dim=1, keepdim=True)  # (N, 1)
    other_norms = others.pow(2).sum(dim=1).unsqueeze(0)  # (1, M)
    squared = norms + other_norms - 2.0 * embeddings @ others.T  # (N, M)
    return squared.clamp_min(0.0)


def paired_distances(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between row i of `first` and row i of `second`: (N, D) x (N, D) -> (N,)."""
    difference = first.float() - second.float()  # (N, D)
    squared = difference.pow(2).sum(dim=1)  # (N,)
    return squared.clamp_min(1e-12).sqrt() * (squared > 0)


def similarity_from_distance(distance, threshold: float):
    """Map a distance to a similarity score in (0, 1]: 1 at distance 0, 0.5 at the threshold.

    Works on floats, numpy arrays and tensors alike. The score is a readable monotone transform
    of the distance, not a probability.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    return 1.0 / (1.0 + (distance / threshold) ** 2)
