"""A 2-D t-SNE map of reference embeddings, and a way to place new images on it without recomputing it.

t-SNE has no transform for new points. A new embedding is placed at the inverse-distance
weighted mean of the map positions of its `neighbours` nearest reference embeddings (distances
measured in embedding space); an embedding equal to a reference lands on that reference.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
import torch

from siamese.distances import squared_pairwise_distances

PLACEMENT_METHOD = (
    "Your images are placed at the inverse-distance-weighted mean of the map positions of their "
    "{neighbours} nearest reference images in embedding space; the map itself is not recomputed."
)


@dataclass
class EmbeddingMap:
    """Map positions (N, 2) of reference embeddings (N, D), with labels (N,) and what made the map."""

    positions: np.ndarray
    embeddings: torch.Tensor
    labels: np.ndarray
    class_names: list[str]
    perplexity: float
    seed: int

    def __len__(self) -> int:
        return self.positions.shape[0]

    def place(self, embeddings: torch.Tensor, neighbours: int = 5) -> np.ndarray:
        """Map positions (M, 2) for new embeddings (M, D): inverse-distance weighted kNN interpolation."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embeddings.shape[1]:
            raise ValueError(
                f"expected embeddings of shape (M, {self.embeddings.shape[1]}), got {tuple(embeddings.shape)}"
            )
        count = min(neighbours, len(self))
        queries = embeddings.detach().float().cpu()  # (M, D)
        squared = squared_pairwise_distances(queries, self.embeddings)  # (M, N)
        nearest = torch.topk(squared, count, dim=1, largest=False).indices  # (M, k)
        # Recomputed directly: the |a|^2 + |b|^2 - 2ab form leaves rounding noise where a == b.
        differences = queries.double().unsqueeze(1) - self.embeddings.double()[nearest]  # (M, k, D)
        distances = differences.pow(2).sum(dim=2).sqrt().numpy()  # (M, k)
        nearest = nearest.numpy()
        # 1/d weights; a zero distance would dominate anyway, so it takes the whole weight.
        exact = distances < 1e-12  # (M, k)
        weights = np.where(exact.any(axis=1, keepdims=True), exact.astype(float), 1.0 / np.maximum(distances, 1e-9))
        weights /= weights.sum(axis=1, keepdims=True)  # (M, k)
        return np.einsum("mk,mkc->mc", weights, self.positions[nearest])  # (M, 2)


def compute_map(
    embeddings: torch.Tensor,
    labels: np.ndarray | torch.Tensor | list[int],
    class_names: list[str],
    perplexity: float = 30.0,
    seed: int = 0,
    max_iter: int = 500,
    angle: float = 0.7,
) -> EmbeddingMap:
    """Run t-SNE (scikit-learn Barnes-Hut, PCA initialisation, fixed seed) on embeddings (N, D).

    500 iterations and a Barnes-Hut angle of 0.7 (scikit-learn: 1000 and 0.5) keep a 2,000-point
    map within a few seconds on a small CPU; the clusters of a trained model are settled by then.
    """
    # Optional dependency: scikit-learn and plotly come with the app extra, and the map needs them alone.
    from sklearn.manifold import TSNE

    count = embeddings.shape[0]
    if count < 5:
        raise ValueError(f"a t-SNE map needs at least 5 points, got {count}")
    # scikit-learn requires perplexity < N; a third of N keeps enough neighbours for small sets.
    usable_perplexity = float(min(perplexity, max(1.0, (count - 1) / 3)))
    data = embeddings.detach().float().cpu().numpy()  # (N, D)
    tsne = TSNE(
        n_components=2,
        perplexity=usable_perplexity,
        init="pca",
        learning_rate="auto",
        max_iter=max_iter,
        angle=angle,
        random_state=seed,
    )
    positions = tsne.fit_transform(data).astype(np.float64)  # (N, 2)
    return EmbeddingMap(
        positions=positions,
        embeddings=torch.from_numpy(data),
        labels=np.asarray(labels),
        class_names=list(class_names),
        perplexity=usable_perplexity,
        seed=seed,
    )


class MapCache:
    """An in-process LRU of computed maps, keyed by (model, points, perplexity) or any hashable key.

    A lock per key means two sessions asking for the same map compute it once.
    """

    def __init__(self, capacity: int = 8):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._maps: OrderedDict[Hashable, EmbeddingMap] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self.computations = 0

    def __len__(self) -> int:
        return len(self._maps)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._maps

    def get(self, key: Hashable, compute: Callable[[], EmbeddingMap]) -> EmbeddingMap:
        """The cached map for `key`, or `compute()`'s result, stored (evicting the least recently used)."""
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._maps:
                    self._maps.move_to_end(key)
                    return self._maps[key]
            embedding_map = compute()
            with self._lock:
                self.computations += 1
                self._maps[key] = embedding_map
                self._maps.move_to_end(key)
                while len(self._maps) > self.capacity:
                    self._maps.popitem(last=False)
                self._key_locks.pop(key, None)
        return embedding_map


# Above this many points the map draws with WebGL (Scattergl): SVG markers slow the browser down.
WEBGL_POINTS = 2000


def class_colours(count: int) -> list[str]:
    """`count` distinct colours: plotly's 26-colour Alphabet, then Dark24, then Light24, then repeats."""
    # Optional dependency: scikit-learn and plotly come with the app extra, and the map needs them alone.
    from plotly.express import colors

    palette = colors.qualitative.Alphabet + colors.qualitative.Dark24 + colors.qualitative.Light24
    return [palette[index % len(palette)] for index in range(count)]


def map_figure(
    embedding_map: EmbeddingMap,
    placed_positions: np.ndarray | None = None,
    placed_names: list[str] | None = None,
    placed_labels: list[str] | None = None,
    title: str | None = None,
):
    """A plotly scatter: one trace per class (hover: class and index), the user's images as stars.

    Maps of more than `WEBGL_POINTS` points draw with WebGL.
    """
    # Optional dependency: scikit-learn and plotly come with the app extra, and the map needs them alone.
    import plotly.graph_objects as go

    figure = go.Figure()
    scatter = go.Scattergl if len(embedding_map.positions) > WEBGL_POINTS else go.Scatter
    colours = class_colours(len(embedding_map.class_names))
    for class_id, class_name in enumerate(embedding_map.class_names):
        members = np.nonzero(embedding_map.labels == class_id)[0]
        if len(members) == 0:
            continue
        figure.add_trace(
            scatter(
                x=embedding_map.positions[members, 0],
                y=embedding_map.positions[members, 1],
                mode="markers",
                name=str(class_name),
                marker={"size": 5, "opacity": 0.75, "color": colours[class_id]},
                customdata=np.stack([np.full(len(members), str(class_name)), members.astype(str)], axis=1),
                hovertemplate="class %{customdata[0]}<br>index %{customdata[1]}<extra></extra>",
            )
        )
    if placed_positions is not None and len(placed_positions):
        names = placed_names or [f"image {index + 1}" for index in range(len(placed_positions))]
        nearest = placed_labels or [""] * len(names)
        figure.add_trace(
            go.Scatter(
                x=placed_positions[:, 0],
                y=placed_positions[:, 1],
                mode="markers+text",
                name="your images",
                text=names,
                textposition="top center",
                marker={"size": 16, "symbol": "star", "color": "black", "line": {"width": 1, "color": "white"}},
                customdata=np.stack([np.asarray(names), np.asarray(nearest)], axis=1),
                hovertemplate="%{customdata[0]}<br>nearest class %{customdata[1]}<extra></extra>",
            )
        )
    figure.update_layout(
        title=title,
        xaxis={"title": "t-SNE 1", "zeroline": False},
        yaxis={"title": "t-SNE 2", "zeroline": False},
        legend={"title": "class"},
        margin={"l": 40, "r": 10, "t": 40 if title else 10, "b": 40},
        height=520,
    )
    return figure
