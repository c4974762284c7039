"""One-shot identification: embed a labelled gallery once, then rank queries against it.

A gallery holds one or more reference images per label. A query is ranked by Euclidean
distance to every reference; the answer is the nearest reference's label, unless even that
one lies beyond the model's calibrated threshold ("no match").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from siamese.distances import squared_pairwise_distances

# "alice_1.png", "alice-02.jpg", "alice (3).png", "alice 4.png" all name the label "alice".
_NUMBER_SUFFIX = re.compile(r"[\s_\-]*(\(\d+\)|\d+)$")


def label_from_filename(filename: str) -> str:
    """The label a file name stands for: its stem without a trailing number.

    `alice_1.png` -> "alice", `bob-smith_03.jpg` -> "bob-smith", `7_12.png` -> "7", `carol.png` -> "carol".
    A stem that is only a number keeps it (`7.png` -> "7").
    """
    stem = Path(filename).stem.strip()
    label = _NUMBER_SUFFIX.sub("", stem)
    return label or stem


@dataclass
class Match:
    """One gallery reference as a query sees it."""

    index: int
    label: str
    distance: float
    name: str


@dataclass
class Ranking:
    """The answer to one query: the nearest references, the runner-up label, and the verdict they give.

    `margin` is the distance to the nearest reference of any other label minus the best
    distance (None with a single label). The verdict is derived from these fields, so it cannot
    disagree with them: `is_match` is False when the best distance lies beyond the threshold;
    `caution` is True for a match whose margin is below `caution_margin` (the second label is nearly
    as close, so the answer may be the wrong one of the two).
    """

    matches: list[Match]
    runner_up_label: str | None
    margin: float | None
    threshold: float | None
    caution_margin: float | None = None

    @property
    def best_distance(self) -> float:
        return self.matches[0].distance

    @property
    def is_match(self) -> bool:
        return self.threshold is None or self.best_distance <= self.threshold

    @property
    def best_label(self) -> str | None:
        """The nearest reference's label; None for "no match"."""
        return self.matches[0].label if self.is_match else None

    @property
    def caution(self) -> bool:
        if not self.is_match or self.margin is None or self.caution_margin is None:
            return False
        return self.margin < self.caution_margin


class Gallery:
    """Reference embeddings (N, D) with their labels, embedded once and ranked against many times."""

    def __init__(self, embeddings: torch.Tensor, labels: list[str], names: list[str] | None = None):
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must have shape (N, D), got {tuple(embeddings.shape)}")
        if len(labels) != embeddings.shape[0]:
            raise ValueError(f"got {embeddings.shape[0]} embeddings but {len(labels)} labels")
        if names is not None and len(names) != len(labels):
            raise ValueError(f"got {len(labels)} labels but {len(names)} names")
        if embeddings.shape[0] == 0:
            raise ValueError("a gallery needs at least one reference image")
        self.embeddings = embeddings.detach().float().cpu()  # (N, D)
        self.labels = [str(label) for label in labels]
        self.names = list(names) if names is not None else [f"#{index}" for index in range(len(labels))]
        self.label_names = sorted(set(self.labels))
        label_index = {label: position for position, label in enumerate(self.label_names)}
        self.label_ids = torch.tensor([label_index[label] for label in self.labels])  # (N,)

    @classmethod
    def build(
        cls,
        model: torch.nn.Module,
        images: torch.Tensor,
        labels: list[str],
        names: list[str] | None = None,
        batch_size: int = 256,
    ) -> Gallery:
        """Embed uint8 images (N, C, H, W) with `model` (in eval mode, restored after) into a gallery."""
        embeddings = model.encode(images, batch_size=batch_size)  # (N, D)
        return cls(embeddings, labels, names)

    def __len__(self) -> int:
        return len(self.labels)

    def label_counts(self) -> dict[str, int]:
        return dict(Counter(self.labels))

    def distances(self, query_embedding: torch.Tensor) -> torch.Tensor:
        """Distances (N,) from one query embedding (D,) or (1, D) to every reference."""
        query = query_embedding.detach().float().cpu().reshape(1, -1)  # (1, D)
        if query.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"query embedding has {query.shape[1]} dimensions, the gallery {self.embeddings.shape[1]}")
        return squared_pairwise_distances(query, self.embeddings)[0].sqrt()  # (N,)

    def rank(
        self,
        query_embedding: torch.Tensor,
        top_k: int = 5,
        threshold: float | None = None,
        caution_margin: float | None = None,
    ) -> Ranking:
        """The `top_k` nearest references to the query, nearest first, and the verdict.

        Beyond `threshold` the answer is "no match"; a match whose margin to the next label is
        below `caution_margin` carries a caution.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        distances = self.distances(query_embedding)  # (N,)
        count = min(top_k, len(self))
        # A stable sort keeps ties in gallery order, so the answer does not depend on the kernel.
        nearest = torch.sort(distances, stable=True).indices[:count].tolist()
        matches = [Match(index, self.labels[index], float(distances[index]), self.names[index]) for index in nearest]

        best = matches[0]
        others = self.label_ids != self.label_ids[best.index]  # (N,)
        runner_up_label = None
        margin = None
        if bool(others.any()):
            other_distances = torch.where(others, distances, torch.full_like(distances, float("inf")))  # (N,)
            runner_up = int(other_distances.argmin())
            runner_up_label = self.labels[runner_up]
            margin = float(distances[runner_up]) - best.distance
        return Ranking(matches, runner_up_label, margin, threshold, caution_margin)


def rank_in_index(
    index,
    query_embedding: torch.Tensor,
    top_k: int = 5,
    threshold: float | None = None,
    caution_margin: float | None = None,
    candidates: int = 32,
) -> Ranking:
    """`Gallery.rank` over a `siamese.search.index.GalleryIndex` of any size: the index finds the nearest
    `candidates` references, and the verdict, margin and caution are decided among them (enough
    for the nearest reference of a second label to be there in practice)."""
    query = query_embedding.detach().float().cpu().reshape(1, -1)  # (1, D)
    _, indices = index.search(query, top_k=min(len(index), max(top_k, candidates)))  # (1, k)
    kept = [position for position in indices[0].tolist() if position >= 0]
    nearest = Gallery(
        index.embeddings_of(kept),
        [index.labels[position] for position in kept],
        [index.paths[position] for position in kept],
    )
    ranking = nearest.rank(query[0], top_k=top_k, threshold=threshold, caution_margin=caution_margin)
    for match in ranking.matches:
        match.index = kept[match.index]  # positions in the whole index, not among the candidates
    return ranking
