"""Contrastive losses, all called as `loss(embeddings, labels)` except the explicit pair loss.

Every loss runs in fp32 even when called inside autocast (bf16 rounding is as large as the
distances between positive pairs), and none reads a value back to the host: masks weight sums
instead of selecting elements, so a GPU step never waits on the CPU.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from siamese._registry import Registry
from siamese.distances import paired_distances, pairwise_distances, squared_pairwise_distances


def full_precision(forward):
    """Run a loss's forward in fp32 with autocast switched off, whatever the caller's precision."""

    @functools.wraps(forward)
    def wrapped(self, *tensors):
        device_type = tensors[0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return forward(self, *(tensor.float() if tensor.is_floating_point() else tensor for tensor in tensors))

    return wrapped


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks over the upper triangle (i < j) of the batch's pair matrix.

    Returns (positive, negative): positive[i, j] is True when i < j and labels match,
    negative[i, j] when i < j and labels differ. Self-pairs and duplicates are excluded.
    """
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B)
    positive = torch.triu(same, diagonal=1)  # (B, B)
    negative = torch.triu(~same, diagonal=1)  # (B, B)
    return positive, negative


def _check_batch(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (B, D), got {tuple(embeddings.shape)}")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must have shape ({embeddings.shape[0]},) to match embeddings, got {tuple(labels.shape)}"
        )


class ContrastiveLoss(nn.Module):
    """Contrastive loss over every pair of a batch (Chopra, Hadsell and LeCun, 2005).

    Same-class pairs cost their squared distance, different-class pairs cost
    max(0, margin - distance)^2; the loss is the mean over all i < j pairs. A batch with fewer
    than two samples has no pair and gives a zero loss that still has a gradient.
    """

    def __init__(self, margin: float = 1.0):
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        self.margin = margin

    @full_precision
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_batch(embeddings, labels)
        positive, negative = pair_masks(labels)  # (B, B) each
        squared = squared_pairwise_distances(embeddings, embeddings)  # (B, B)
        distances = squared.clamp_min(1e-12).sqrt()  # (B, B)
        positive_loss = (squared * positive).sum()
        negative_loss = (torch.relu(self.margin - distances).pow(2) * negative).sum()
        pair_count = positive.sum() + negative.sum()
        return (positive_loss + negative_loss) / pair_count.clamp_min(1)


class TripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans, Beyer and Leibe, 2017).

    For each anchor, the farthest same-class sample and the nearest other-class sample form
    the triplet; the loss is the mean of max(0, d(a, p) - d(a, n) + margin), or its soft-plus
    version when `soft_margin` is set. Anchors with no positive or no negative are left out;
    a batch with no valid anchor gives a zero loss that still has a gradient.
    """

    def __init__(self, margin: float = 0.2, soft_margin: bool = False):
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be non-negative, got {margin}")
        self.margin = margin
        self.soft_margin = soft_margin

    @full_precision
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_batch(embeddings, labels)
        distances = pairwise_distances(embeddings)  # (B, B)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B)
        not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)  # (B, B)
        positive = same & not_self
        negative = ~same
        hardest_positive = torch.where(positive, distances, torch.zeros_like(distances)).amax(dim=1)  # (B,)
        far = torch.finfo(distances.dtype).max
        hardest_negative = torch.where(negative, distances, torch.full_like(distances, far)).amin(dim=1)  # (B,)
        valid = (positive.any(dim=1) & negative.any(dim=1)).float()  # (B,)
        gap = (hardest_positive - hardest_negative) * valid  # (B,), zero where the anchor has no triplet
        per_anchor = nn.functional.softplus(gap) if self.soft_margin else torch.relu(gap + self.margin)
        # The mean over valid anchors; a batch with none gives zero, still with a gradient.
        return (per_anchor * valid).sum() / valid.sum().clamp_min(1) + embeddings.sum() * 0.0


class PairContrastiveLoss(nn.Module):
    """Contrastive loss over explicit pairs, as in the one-shot faces article (margin 2).

    Called as `loss(first, second, pair_labels)` with first and second (N, D) embeddings.
    `different_label` says which label value marks a *different* pair: the article uses 1 for
    different and 0 for same (`different_label=1`, the default); the MNIST tutorial's
    convention is the opposite (`different_label=0`, i.e. 1 means same).
    """

    def __init__(self, margin: float = 2.0, different_label: int = 1):
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        if different_label not in (0, 1):
            raise ValueError(f"different_label must be 0 or 1, got {different_label}")
        self.margin = margin
        self.different_label = different_label

    @full_precision
    def forward(self, first: torch.Tensor, second: torch.Tensor, pair_labels: torch.Tensor) -> torch.Tensor:
        if first.ndim != 2 or first.shape != second.shape:
            raise ValueError(
                f"first and second must both have shape (N, D), got {tuple(first.shape)} and {tuple(second.shape)}"
            )
        if pair_labels.shape != (first.shape[0],):
            raise ValueError(f"pair_labels must have shape ({first.shape[0]},), got {tuple(pair_labels.shape)}")
        if pair_labels.device.type == "cpu" and not torch.all((pair_labels == 0) | (pair_labels == 1)):
            raise ValueError("pair_labels must hold only 0 and 1")  # checked where it costs no device sync
        different = (pair_labels == self.different_label).float()  # (N,)
        distances = paired_distances(first, second)  # (N,)
        same_cost = distances.pow(2)
        different_cost = torch.relu(self.margin - distances).pow(2)
        return ((1.0 - different) * same_cost + different * different_cost).mean()


class PairwiseFromBatch(nn.Module):
    """Adapts PairContrastiveLoss to `loss(embeddings, labels)`: a batch of pairs laid out as
    [first_1, second_1, first_2, second_2, ...], with labels giving each image's class."""

    def __init__(self, margin: float = 2.0):
        super().__init__()
        self.pair_loss = PairContrastiveLoss(margin=margin, different_label=1)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_batch(embeddings, labels)
        if embeddings.shape[0] % 2:
            raise ValueError(f"a batch of pairs needs an even size, got {embeddings.shape[0]}")
        first, second = embeddings[0::2], embeddings[1::2]  # (N, D) each
        different = (labels[0::2] != labels[1::2]).long()  # (N,)
        return self.pair_loss(first, second, different)


class CosFaceLoss(nn.Module):
    """Large-margin cosine loss (Wang et al., 2018) with one learned proxy per training class.

    logits = scale * (cos(embedding, proxy_c) - margin * [c is the label]), then cross-entropy.
    Only the embedding network is kept after training; the proxies live in the loss. Works best
    with unit-length embeddings (`normalize=True`) and generalises to unseen classes because it
    asks for an angular margin between every class, not just within each batch.
    """

    def __init__(self, embedding_dim: int, class_count: int, margin: float = 0.35, scale: float = 30.0):
        super().__init__()
        if class_count < 2:
            raise ValueError(f"CosFace needs at least 2 classes, got {class_count}")
        self.proxies = nn.Parameter(torch.randn(class_count, embedding_dim) / embedding_dim**0.5)  # (C, D)
        self.margin = margin
        self.scale = scale

    @full_precision
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_batch(embeddings, labels)
        # The range check reads the labels on the host: free on the CPU, a sync on a GPU, where an
        # out-of-range label stops the kernel with a device-side assertion instead.
        if labels.device.type == "cpu" and (int(labels.max()) >= self.proxies.shape[0] or int(labels.min()) < 0):
            raise ValueError(f"labels must lie in [0, {self.proxies.shape[0]}), got {labels.min()}..{labels.max()}")
        cosine = nn.functional.normalize(embeddings.float(), dim=1) @ nn.functional.normalize(self.proxies, dim=1).T
        margins = nn.functional.one_hot(labels, self.proxies.shape[0]).float() * self.margin  # (B, C)
        return nn.functional.cross_entropy(self.scale * (cosine - margins), labels)


class PartsLoss(nn.Module):
    """Applies one loss to each equal chunk of a part-based embedding and averages them.

    The chunks of `siamese.modeling.architectures.PartsNeck` are each scaled to unit length here, so every part
    loss sees embeddings shaped as it would from a single-part network.
    """

    def __init__(self, part_losses: list[nn.Module]):
        super().__init__()
        if not part_losses:
            raise ValueError("PartsLoss needs at least one part loss")
        self.part_losses = nn.ModuleList(part_losses)

    @full_precision
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_batch(embeddings, labels)
        count = len(self.part_losses)
        if embeddings.shape[1] % count:
            raise ValueError(f"embedding size {embeddings.shape[1]} does not split into {count} equal parts")
        chunks = embeddings.reshape(embeddings.shape[0], count, -1) * count**0.5  # (B, P, d)
        return sum(loss(chunks[:, index], labels) for index, loss in enumerate(self.part_losses)) / count


LOSSES: Registry = Registry("loss")


@LOSSES.register("contrastive", "all pairs of a batch, the MNIST tutorial's loss")
def _contrastive(margin: float, **_) -> nn.Module:
    return ContrastiveLoss(margin=margin)


@LOSSES.register("triplet", "batch-hard triplets")
def _triplet(margin: float, **_) -> nn.Module:
    return TripletLoss(margin=margin)


@LOSSES.register("pair", "the faces article's pairwise loss on (a, b) pairs")
def _pair(margin: float, **_) -> nn.Module:
    return PairwiseFromBatch(margin=margin)


@LOSSES.register("cosface", "large-margin cosine loss over learned class proxies")
def _cosface(margin: float, embedding_dim: int | None, class_count: int | None, **_) -> nn.Module:
    if embedding_dim is None or class_count is None:
        raise ValueError("the cosface loss needs embedding_dim and class_count")
    return CosFaceLoss(embedding_dim, class_count, margin=margin)


def build_loss(
    name: str,
    margin: float,
    embedding_dim: int | None = None,
    class_count: int | None = None,
    parts: int = 0,
) -> nn.Module:
    """The loss a config names; margin is the loss's own margin.

    `embedding_dim` and `class_count` are for losses that learn per-class parameters. With
    `parts` > 0 the embedding holds parts + 1 chunks (see `PartsNeck`), each with its own loss.
    """
    make = LOSSES.get(name)
    if parts:
        if embedding_dim is None or embedding_dim % (parts + 1):
            raise ValueError(f"embedding_dim {embedding_dim} must divide into parts + 1 = {parts + 1} chunks")
        chunk = embedding_dim // (parts + 1)
        return PartsLoss([make(margin=margin, embedding_dim=chunk, class_count=class_count) for _ in range(parts + 1)])
    return make(margin=margin, embedding_dim=embedding_dim, class_count=class_count)
