"""A searchable gallery of embeddings: exact search for small galleries, FAISS for large ones; one file on disk.

`siamese embed` writes a gallery file; `siamese search`, the app and `GalleryIndex.load` read it.
The file is safetensors: the embeddings, the labels and relative paths (as UTF-8 JSON bytes), the
model that made them, and for large galleries the FAISS structure (`faiss.serialize_index`
bytes), so nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

FORMAT = "siamese-gallery"
FORMAT_VERSION = "1"
# Up to this many embeddings the exact search is fast enough (benchmarks/gallery_benchmark.py: a few
# ms per query on 2 CPU cores at 100k); beyond it an inverted-file FAISS index answers in ~1 ms.
EXACT_LIMIT = 200_000
# The inverted file: about 4 * sqrt(N) lists, trained on at most 100k vectors, and enough lists
# probed that recall@5 against exact search stays at or above 0.99 (measured in the benchmark).
TRAINING_SAMPLE = 100_000
PROBE_SHARE = 1 / 48
MIN_PROBES = 16


class GalleryFileError(ValueError):
    """A gallery file that cannot be used: damaged, not a gallery, or made by another model."""


class GalleryIndex:
    """Embeddings (N, D) with a label and a path each, searchable by Euclidean distance.

    `backend` is "exact" (chunked matrix products on `device`), "faiss" (an inverted-file index of
    exact vectors, IndexIVFFlat) or "auto" (exact up to `EXACT_LIMIT` embeddings).
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        labels: list[str],
        paths: list[str] | None = None,
        model_id: str | None = None,
        revision: str | None = None,
        backend: str = "auto",
        device: str | torch.device = "cpu",
    ):
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise ValueError(f"embeddings must have shape (N, D) with N >= 1, got {tuple(embeddings.shape)}")
        if len(labels) != embeddings.shape[0]:
            raise ValueError(f"got {embeddings.shape[0]} embeddings but {len(labels)} labels")
        if paths is not None and len(paths) != len(labels):
            raise ValueError(f"got {len(labels)} labels but {len(paths)} paths")
        if backend not in ("auto", "exact", "faiss"):
            raise ValueError(f"backend must be auto, exact or faiss, got {backend!r}")
        self.embeddings = embeddings.detach().float().contiguous().to(device)  # (N, D)
        self.labels = [str(label) for label in labels]
        self.paths = [str(path) for path in paths] if paths is not None else [""] * len(labels)
        self.model_id = model_id
        self.revision = revision
        self.backend = ("faiss" if len(labels) > EXACT_LIMIT else "exact") if backend == "auto" else backend
        self._norms = self.embeddings.pow(2).sum(dim=1)  # (N,)
        self._faiss = self._build_faiss() if self.backend == "faiss" else None

    @property
    def embedding_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    def embeddings_of(self, indices) -> torch.Tensor:
        """The stored embeddings (K, D) at `indices`, on the CPU (indices below 0 are left out)."""
        index = torch.as_tensor(indices, dtype=torch.long).flatten()
        return self.embeddings[index[index >= 0].to(self.embeddings.device)].cpu()

    # ----- search -----

    def search(self, queries: torch.Tensor, top_k: int = 5, chunk: int = 65_536) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances (Q, k) and indices (Q, k) of each query's `top_k` nearest embeddings, nearest first."""
        queries = torch.as_tensor(queries).float()
        queries = queries.reshape(1, -1) if queries.ndim == 1 else queries  # (Q, D)
        if queries.shape[1] != self.embedding_dim:
            raise GalleryFileError(
                f"queries have {queries.shape[1]} dimensions but the gallery {self.embedding_dim}: embed them with "
                f"the gallery's model ({self.model_id or 'unknown'})"
            )
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        count = min(top_k, len(self))
        if self._faiss is not None:
            squared, indices = self._faiss.search(np.ascontiguousarray(queries.cpu().numpy()), count)
            return torch.from_numpy(squared).clamp_min(0).sqrt(), torch.from_numpy(indices).long()
        return self._exact(queries.to(self.embeddings.device), count, chunk)

    def _exact(self, queries: torch.Tensor, count: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-k by |q|^2 + |x|^2 - 2 q.x over chunks of the gallery, merged as it goes."""
        best_distances = best_indices = None
        query_norms = queries.pow(2).sum(dim=1, keepdim=True)  # (Q, 1)
        for start in range(0, len(self), chunk):
            block = self.embeddings[start : start + chunk]  # (c, D)
            squared = query_norms + self._norms[start : start + chunk] - 2.0 * queries @ block.T  # (Q, c)
            distances, indices = torch.topk(squared, min(count, block.shape[0]), dim=1, largest=False)  # (Q, k')
            indices = indices + start
            if best_distances is not None:
                distances = torch.cat([best_distances, distances], dim=1)
                indices = torch.cat([best_indices, indices], dim=1)
                distances, order = torch.topk(distances, count, dim=1, largest=False)
                indices = torch.gather(indices, 1, order)
            best_distances, best_indices = distances, indices
        # Exact ties in gallery order: sort by position, then stably by distance.
        by_position = torch.argsort(best_indices, dim=1)
        best_distances = torch.gather(best_distances, 1, by_position)
        best_indices = torch.gather(best_indices, 1, by_position)
        by_distance = torch.argsort(best_distances, dim=1, stable=True)
        best_distances = torch.gather(best_distances, 1, by_distance)
        best_indices = torch.gather(best_indices, 1, by_distance)
        return best_distances.clamp_min(0).sqrt().cpu(), best_indices.cpu()

    def _build_faiss(self):
        try:
            import faiss  # optional dependency: faiss-cpu, for galleries over EXACT_LIMIT
        except ImportError as error:
            raise ImportError("the faiss backend needs faiss-cpu: pip install faiss-cpu") from error
        vectors = np.ascontiguousarray(self.embeddings.cpu().numpy())  # (N, D) float32
        lists = max(1, min(int(4 * len(vectors) ** 0.5), len(vectors) // 39))
        quantizer = faiss.IndexFlatL2(vectors.shape[1])
        index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], lists, faiss.METRIC_L2)
        generator = np.random.default_rng(0)
        sample = vectors[generator.choice(len(vectors), min(len(vectors), TRAINING_SAMPLE), replace=False)]
        index.train(sample)
        index.add(vectors)
        index.nprobe = min(lists, max(MIN_PROBES, int(np.ceil(lists * PROBE_SHARE))))
        return index

    # ----- files -----

    def check_model(self, model_id: str | None, embedding_dim: int) -> None:
        """Refuse a gallery made by another model: the dimension, or the model id when both are known."""
        if embedding_dim != self.embedding_dim:
            raise GalleryFileError(
                f"this gallery holds {self.embedding_dim}-d embeddings of {self.model_id or 'an unknown model'}, but "
                f"the model makes {embedding_dim}-d ones: embed the images again with `siamese embed --model ...`"
            )
        if model_id and self.model_id and model_id != self.model_id:
            raise GalleryFileError(
                f"this gallery was made with {self.model_id!r}, not {model_id!r}: distances from another model mean "
                f"nothing here; embed the images again with `siamese embed --model {model_id}`"
            )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the gallery to one safetensors file, atomically (a temporary file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "embeddings": self.embeddings.cpu().contiguous(),
            "labels": _json_bytes(self.labels),
            "paths": _json_bytes(self.paths),
        }
        if self._faiss is not None:
            import faiss  # optional dependency: only a FAISS-backed gallery gets here

            tensors["faiss_index"] = torch.from_numpy(faiss.serialize_index(self._faiss).copy())
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_id": self.model_id or "",
            "revision": self.revision or "",
            "embedding_dim": str(self.embedding_dim),
            "count": str(len(self)),
            "backend": self.backend,
        }
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            save_file(tensors, str(temporary), metadata=metadata)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> GalleryIndex:
        """Read a gallery file; a clear `GalleryFileError` for a missing, damaged or foreign file."""
        path = Path(path)
        if not path.is_file():
            raise GalleryFileError(f"{path}: no such gallery file")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise GalleryFileError(f"{path} is damaged or not a safetensors file ({error})") from error
        if metadata.get("format") != FORMAT:
            raise GalleryFileError(f"{path} is a safetensors file but not a gallery written by `siamese embed`")
        try:
            embeddings = tensors["embeddings"]
            labels = _from_json_bytes(tensors["labels"])
            paths = _from_json_bytes(tensors["paths"])
            count = int(metadata["count"])
        except (KeyError, ValueError, UnicodeDecodeError) as error:
            raise GalleryFileError(f"{path} is an incomplete gallery file ({error})") from error
        if embeddings.ndim != 2 or embeddings.shape[0] != count or len(labels) != count or len(paths) != count:
            raise GalleryFileError(f"{path} is inconsistent: {count} entries announced, {embeddings.shape[0]} found")
        index = cls.__new__(cls)
        index.embeddings = embeddings.float().contiguous().to(device)
        index.labels, index.paths = [str(label) for label in labels], [str(item) for item in paths]
        index.model_id = metadata.get("model_id") or None
        index.revision = metadata.get("revision") or None
        index._norms = index.embeddings.pow(2).sum(dim=1)
        index.backend = metadata.get("backend", "exact")
        index._faiss = None
        if index.backend == "faiss":
            import faiss  # optional dependency: only a FAISS gallery file gets here

            if "faiss_index" in tensors:
                index._faiss = faiss.deserialize_index(tensors["faiss_index"].numpy())
                lists = index._faiss.nlist
                index._faiss.nprobe = min(lists, max(MIN_PROBES, int(np.ceil(lists * PROBE_SHARE))))
            else:
                index._faiss = index._build_faiss()
        return index


def _json_bytes(values: list[str]) -> torch.Tensor:
    return torch.frombuffer(bytearray(json.dumps(values).encode("utf-8")), dtype=torch.uint8).clone()


def _from_json_bytes(tensor: torch.Tensor) -> list:
    values = json.loads(bytes(tensor.numpy().tobytes()).decode("utf-8"))
    if not isinstance(values, list):
        raise ValueError("expected a JSON list")
    return values
