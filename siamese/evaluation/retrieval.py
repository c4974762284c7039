"""Retrieval evaluation: embed a data set, then score test queries against training references.

Queries always come from the held-out set and references from the training set, so a figure
from here is a test-set figure. Nothing in this module updates a model.
"""

from __future__ import annotations

import torch
from torch import nn

from siamese.data.datasets import ImageSet
from siamese.distances import squared_pairwise_distances


def _neighbour_order(queries: torch.Tensor, references: torch.Tensor, count: int, block: int = 1024):
    """Indices (Q, count) of each query's `count` nearest references, nearest first, in query blocks."""
    orders = []
    for start in range(0, queries.shape[0], block):
        squared = squared_pairwise_distances(queries[start : start + block], references)  # (b, R)
        orders.append(torch.topk(squared, count, dim=1, largest=False, sorted=True).indices)  # (b, count)
    return torch.cat(orders)  # (Q, count)


def knn_accuracy(
    query_embeddings: torch.Tensor,
    query_labels: torch.Tensor,
    reference_embeddings: torch.Tensor,
    reference_labels: torch.Tensor,
    k: int = 5,
) -> float:
    """Share of queries whose k nearest references (Euclidean) vote for the right class.

    A tie goes to the smallest class index, as scikit-learn's KNeighborsClassifier does.
    """
    k = min(k, reference_embeddings.shape[0])
    neighbours = _neighbour_order(query_embeddings, reference_embeddings, k)  # (Q, k)
    votes_for = reference_labels[neighbours]  # (Q, k)
    class_count = int(max(reference_labels.max(), query_labels.max())) + 1
    votes = torch.zeros(query_labels.shape[0], class_count, dtype=torch.long)  # (Q, classes)
    votes.scatter_add_(1, votes_for, torch.ones_like(votes_for))
    predicted = votes.argmax(dim=1)  # (Q,), first maximum = smallest class on a tie
    return float((predicted == query_labels).float().mean())


def precision_at_1(query_embeddings, query_labels, reference_embeddings, reference_labels) -> float:
    """Share of queries whose single nearest reference has the query's class."""
    nearest = _neighbour_order(query_embeddings, reference_embeddings, 1)[:, 0]  # (Q,)
    return float((reference_labels[nearest] == query_labels).float().mean())


def map_at_r(query_embeddings, query_labels, reference_embeddings, reference_labels) -> float:
    """Mean average precision at R (Musgrave et al., 2020), R = the query class's reference count.

    For each query, the precision at every rank i <= R where the i-th neighbour is relevant is
    summed and divided by R. Queries whose class has no reference are left out.
    """
    class_count = int(max(reference_labels.max(), query_labels.max())) + 1
    references_per_class = torch.bincount(reference_labels, minlength=class_count)  # (classes,)
    r_per_query = references_per_class[query_labels]  # (Q,)
    keep = r_per_query > 0
    query_embeddings, query_labels, r_per_query = query_embeddings[keep], query_labels[keep], r_per_query[keep]
    max_r = int(r_per_query.max())
    scores = []
    block = max(1, 2_000_000 // max_r)  # bounds the (block, max_r) neighbour matrix
    for start in range(0, query_labels.shape[0], block):
        order = _neighbour_order(query_embeddings[start : start + block], reference_embeddings, max_r)  # (b, max_r)
        labels = query_labels[start : start + block]
        r = r_per_query[start : start + block]
        ranks = torch.arange(1, max_r + 1)  # (max_r,)
        within_r = ranks.unsqueeze(0) <= r.unsqueeze(1)  # (b, max_r)
        relevant = (reference_labels[order] == labels.unsqueeze(1)) & within_r  # (b, max_r)
        precision_at_rank = relevant.cumsum(dim=1) / ranks  # (b, max_r)
        scores.append((precision_at_rank * relevant).sum(dim=1) / r)  # (b,)
    return float(torch.cat(scores).mean())


def neighbour_metrics(
    query_embeddings: torch.Tensor,
    query_labels: torch.Tensor,
    reference_embeddings: torch.Tensor,
    reference_labels: torch.Tensor,
    k: int = 5,
    block: int = 1024,
) -> dict:
    """kNN accuracy, precision@1 and MAP@R from one neighbour search, on the embeddings' device, in blocks.

    Each block of queries is ranked once against the references, to depth max(k, R); all three
    figures are read off that one order. Same definitions as `knn_accuracy`, `precision_at_1`
    and `map_at_r`, which a test checks.
    """
    device = reference_embeddings.device
    query_labels, reference_labels = query_labels.to(device), reference_labels.to(device)
    class_count = int(max(reference_labels.max(), query_labels.max())) + 1
    references_per_class = torch.bincount(reference_labels, minlength=class_count)  # (classes,)
    k = min(k, reference_embeddings.shape[0])
    depth = max(k, int(references_per_class.max()))
    knn_correct = torch.zeros((), device=device)
    first_correct = torch.zeros((), device=device)
    average_precision = torch.zeros((), device=device)
    counted = torch.zeros((), device=device)
    ranks = torch.arange(1, depth + 1, device=device)  # (depth,)
    for start in range(0, query_embeddings.shape[0], block):
        queries = query_embeddings[start : start + block].to(device)  # (b, D)
        labels = query_labels[start : start + block]  # (b,)
        squared = squared_pairwise_distances(queries, reference_embeddings)  # (b, R_total)
        order = torch.topk(squared, depth, dim=1, largest=False, sorted=True).indices  # (b, depth)
        neighbour_labels = reference_labels[order]  # (b, depth)
        votes = torch.zeros(labels.shape[0], class_count, dtype=torch.long, device=device)  # (b, classes)
        votes.scatter_add_(1, neighbour_labels[:, :k], torch.ones_like(neighbour_labels[:, :k]))
        knn_correct += (votes.argmax(dim=1) == labels).sum()  # first maximum = smallest class on a tie
        first_correct += (neighbour_labels[:, 0] == labels).sum()
        r = references_per_class[labels]  # (b,)
        relevant = (neighbour_labels == labels.unsqueeze(1)) & (ranks.unsqueeze(0) <= r.unsqueeze(1))  # (b, depth)
        precision_at_rank = relevant.cumsum(dim=1) / ranks  # (b, depth)
        scores = (precision_at_rank * relevant).sum(dim=1) / r.clamp_min(1)  # (b,)
        average_precision += torch.where(r > 0, scores, torch.zeros_like(scores)).sum()
        counted += (r > 0).sum()
    total = query_embeddings.shape[0]
    return {
        "knn_accuracy": float(knn_correct) / total,  # the only host syncs: once per figure
        "knn_k": k,
        "precision_at_1": float(first_correct) / total,
        "map_at_r": float(average_precision / counted.clamp_min(1)),
    }


def retrieval_metrics(
    model: nn.Module,
    train: ImageSet,
    test: ImageSet,
    k: int = 5,
    precision: str = "fp32",
) -> dict:
    """kNN accuracy, precision@1 and MAP@R: test images as queries, training images as references.

    Embeddings stay on the model's device, and one neighbour search serves all three figures.
    """
    if train is test:
        raise ValueError("the test set must be held out: it is the training set itself")
    reference = model.encode(train.images, batch_size=1024, precision=precision, on_device=True)  # (R, D)
    queries = model.encode(test.images, batch_size=1024, precision=precision, on_device=True)  # (Q, D)
    return neighbour_metrics(queries, test.labels, reference, train.labels, k=k)
