"""t-SNE maps as a server draws them: one per (model, reference set, points, perplexity), computed once, with
the user's own images placed on it, and the image behind each point."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from siamese.data import examples as example_data
from siamese.distances import squared_pairwise_distances
from siamese.evaluation.embedding_map import EmbeddingMap, MapCache, compute_map
from siamese.search.gallery import label_from_filename
from siamese.serving.images import model_kind, open_usable_image
from siamese.serving.messages import MapError

MAX_MAP_IMAGES = 50
MAP_NEIGHBOURS = 5
MIN_OWN_IMAGES = 5  # t-SNE's own minimum: for a map of the user's images alone, or of the examples a face model embeds


def no_progress(*args, **kwargs) -> None:
    """A progress callback that reports nowhere."""


@dataclass
class DrawnMap:
    """A map and what is drawn on it: the user's images placed (M, 2) with their names and nearest classes, or
    nothing placed when the map is of their images alone (`source` None) or they gave none."""

    embedding_map: EmbeddingMap
    source: str | None  # where the reference images came from
    cached: bool = False
    placed: np.ndarray | None = None
    user_names: list[str] | None = None
    nearest: list[str] | None = None


def nearest_classes(embedding_map: EmbeddingMap, embeddings: torch.Tensor) -> list[str]:
    """The class of each embedding's (M, D) nearest reference on the map."""
    nearest = squared_pairwise_distances(embeddings, embedding_map.embeddings).argmin(dim=1)  # (M,)
    return [str(embedding_map.class_names[embedding_map.labels[index]]) for index in nearest.tolist()]


class EmbeddingMaps:
    """The maps drawn so far (an LRU cache) and, for each, the example indices (N,) behind its points."""

    def __init__(self, capacity: int = 8):
        self.cache = MapCache(capacity=capacity)
        self.sources: dict[tuple, torch.Tensor] = {}

    def draw(
        self,
        key: tuple,
        model,
        examples,
        user_images: list[torch.Tensor],
        user_names: list[str],
        progress: Callable = no_progress,
    ) -> DrawnMap:
        """The map of `examples` (an ExampleSet, or None for a map of the user's images alone) for `key` =
        (model name, points, perplexity), with the user's prepared images (C, H, W) placed on it."""
        model_name, points, perplexity = key
        if examples is None:
            return self._own_images_map(model, user_images, user_names, perplexity, progress)
        source_key = (model_name, examples.source, points, perplexity)
        cached = source_key in self.cache

        def compute() -> EmbeddingMap:
            progress(0.1, desc=f"Embedding {points} reference images")
            chosen = example_data.balanced_indices(examples.labels, points)
            # A face model leaves out the examples where it finds no face.
            embeddings, kept = model.encode(examples.images[chosen], skip_no_face=True)  # (K, D)
            chosen = chosen[kept]
            if len(chosen) < MIN_OWN_IMAGES:
                raise MapError(f"Only {len(chosen)} of the example images could be embedded: too few for a map.")
            progress(0.3, desc=f"Running t-SNE on {len(chosen)} points (perplexity {perplexity:g})")
            self.sources[source_key] = chosen
            return compute_map(embeddings, examples.labels[chosen].numpy(), examples.class_names, perplexity)

        drawn = DrawnMap(self.cache.get(source_key, compute), examples.source, cached)
        if user_images:
            progress(0.9, desc="Placing your images")
            user_embeddings = model.encode(torch.stack(user_images))  # (M, D)
            drawn.placed = drawn.embedding_map.place(user_embeddings, neighbours=MAP_NEIGHBOURS)  # (M, 2)
            drawn.user_names = user_names
            drawn.nearest = nearest_classes(drawn.embedding_map, user_embeddings)
        return drawn

    @staticmethod
    def _own_images_map(model, images, names, perplexity: float, progress: Callable) -> DrawnMap:
        if len(images) < MIN_OWN_IMAGES:
            raise MapError(
                f"No reference images for {model_kind(model)!r} models on this machine (the Olivetti faces could "
                f"not be loaded), so the map is made of your own images alone: upload at least {MIN_OWN_IMAGES}."
            )
        progress(0.3, desc=f"Running t-SNE on your {len(images)} images")
        labels = [label_from_filename(name) for name in names]
        class_names = sorted(set(labels))
        label_ids = np.array([class_names.index(label) for label in labels])
        embeddings = model.encode(torch.stack(images))  # (M, D)
        return DrawnMap(compute_map(embeddings, label_ids, class_names, perplexity), source=None)

    def point(self, key: tuple, examples, which: str, index: int, user_paths: list[str]):
        """The image behind point `index` of the map for `key` and its caption: a reference example (`which` is
        "reference") or the user's image ("yours"). (None, "") for a point that is not there; (None, a hint) for a
        map this server no longer holds."""
        if which == "yours":
            if index >= len(user_paths):
                return None, ""
            name = Path(user_paths[index]).name
            return open_usable_image(user_paths[index], name), name
        model_name, points, perplexity = key
        chosen = None if examples is None else self.sources.get((model_name, examples.source, points, perplexity))
        if chosen is None or index >= len(chosen):
            return None, "Draw the map again to see its images."
        example_index = int(chosen[index])
        label = examples.class_names[int(examples.labels[example_index])]
        image = Image.fromarray(examples.images[example_index, 0].numpy())  # (H, W)
        return image, f"class {label}, example #{example_index}"
