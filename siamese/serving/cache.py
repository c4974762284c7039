"""Embeddings kept per server, keyed by model and image content, so no image is embedded twice by one model."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch

EMBEDDING_CACHE_SIZE = 20_000  # embeddings kept per server


def image_digest(image: torch.Tensor) -> bytes:
    """A key for a prepared image's content: equal for images the model sees alike."""
    return hashlib.sha1(image.numpy().tobytes()).digest()


class EmbeddingCache:
    """The most recently embedded images' embeddings, keyed by (model name, image content); safe across request
    threads."""

    def __init__(self, capacity: int = EMBEDDING_CACHE_SIZE):
        self.capacity = capacity
        self._embeddings: OrderedDict[tuple[str, bytes], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.last_embedded = 0  # images the last call had to embed

    def __len__(self) -> int:
        return len(self._embeddings)

    def encode(self, model_name: str, model, images: list[torch.Tensor]) -> torch.Tensor:
        """Embeddings (N, D) of prepared uint8 images (C, H, W); those this model already embedded come from the
        cache, so switching models back and forth re-embeds only what it must."""
        keys = [(model_name, image_digest(image)) for image in images]
        with self._lock:
            missing = [position for position, key in enumerate(keys) if key not in self._embeddings]
        if missing:
            fresh = model.encode(torch.stack([images[position] for position in missing]))  # (M, D)
            with self._lock:
                for position, embedding in zip(missing, fresh, strict=True):
                    self._embeddings[keys[position]] = embedding
                    self._embeddings.move_to_end(keys[position])
                while len(self._embeddings) > self.capacity:
                    self._embeddings.popitem(last=False)
        with self._lock:
            self.last_embedded = len(missing)
            return torch.stack([self._embeddings[key] for key in keys])  # (N, D)
