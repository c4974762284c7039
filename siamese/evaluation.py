"""Retrieval evaluation: embed a data set, then score test queries against training references.

Queries always come from the held-out set and references from the training set, so a figure
from here is a test-set figure. Nothing in this module updates a model.
"""

from __future__ import annotations

import torch
from torch import nn

from siamese.data import ImageSet, to_float
from siamese.distances import squared_pairwise_distances
from siamese.precision import autocast_context


def embed(
    model: nn.Module,
    images: torch.Tensor,
    preprocessing: dict,
    batch_size: int = 1024,
    precision: str = "fp32",
) -> torch.Tensor:
    """Embed uint8 images (N, C, H, W) in batches on the model's device; returns float32 (N, D) on CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    with torch.inference_mode(), autocast_context(device, precision):
        for start in range(0, images.shape[0], batch_size):
            batch = to_float(images[start : start + batch_size].to(device), preprocessing)  # (b, C, H, W)
            chunks.append(model(batch).float().cpu())  # (b, D)
    model.train(was_training)
    if not chunks:
        return torch.zeros(0, getattr(model, "embedding_dim", 0))
    return torch.cat(chunks)  # (N, D)


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


def retrieval_metrics(
    model: nn.Module,
    train: ImageSet,
    test: ImageSet,
    preprocessing: dict,
    k: int = 5,
    precision: str = "fp32",
) -> dict:
    """kNN accuracy, precision@1 and MAP@R: test images as queries, training images as references."""
    if train is test:
        raise ValueError("the test set must be held out: it is the training set itself")
    reference = embed(model, train.images, preprocessing, precision=precision)  # (R, D)
    queries = embed(model, test.images, preprocessing, precision=precision)  # (Q, D)
    reference_labels, query_labels = train.labels.cpu(), test.labels.cpu()
    return {
        "knn_accuracy": knn_accuracy(queries, query_labels, reference, reference_labels, k=k),
        "knn_k": k,
        "precision_at_1": precision_at_1(queries, query_labels, reference, reference_labels),
        "map_at_r": map_at_r(queries, query_labels, reference, reference_labels),
    }
