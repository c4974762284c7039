"""A decoded-image cache on disk, for image folders too big to hold in memory.

Each image is decoded and resized once into a uint8 memory-mapped array (N, C, H, W); a small JSON
index beside it holds the paths and labels. The cache's name is a hash of what it was made from
(relative paths, labels, file sizes and modification times, preprocessing), so a changed folder
gets a fresh cache and an unchanged one is reused at once. A build writes under temporary names
and renames when complete, so a killed build never looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from siamese.images import ImageError, prepare_image

CACHE_FORMAT = 1
INDEX_SUFFIX = ".json"
DATA_SUFFIX = ".uint8"
# Images per worker task: large enough that process overhead is small, small enough to spread the work.
CHUNK_SIZE = 256


def _common_root(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(path.parent) for path in paths]))


def folder_images(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """Image paths under root/<class>/ with integer labels, and the class names in label order.

    Only the file names are read (no decoding), so listing a folder of 100,000 images is quick.
    """
    from siamese.folders import IMAGE_SUFFIXES

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder: expected one sub-folder per class")
    class_folders = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    paths, labels = [], []
    for label, folder in enumerate(class_folders):
        for entry in sorted(os.scandir(folder), key=lambda item: item.name):
            if entry.is_file() and not entry.name.startswith(".") and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                paths.append(Path(entry.path))
                labels.append(label)
    if not paths:
        raise ValueError(f"{root} has no images in class sub-folders")
    return paths, labels, [folder.name for folder in class_folders]


def cache_key(paths: list[str | Path], labels: list[int], preprocessing: dict) -> str:
    """A hash of the sorted relative paths with their labels, sizes and modification times, and the preprocessing.

    Touching, replacing or relabelling any file, or changing the preprocessing, changes the key.
    """
    absolute = [Path(os.path.abspath(path)) for path in paths]
    root = _common_root(absolute)
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CACHE_FORMAT, "preprocessing": preprocessing}, sort_keys=True).encode())
    for relative, label, path in sorted(
        (str(path.relative_to(root)), int(label), path) for path, label in zip(absolute, labels, strict=True)
    ):
        status = path.stat()
        digest.update(f"{relative}\0{label}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _single_threaded() -> None:
    """Worker start-up: one intra-op thread, as DataLoader workers do, since OpenMP pools do not survive a fork."""
    torch.set_num_threads(1)


def _decode_into(data_path: str, shape: tuple[int, ...], start: int, paths: list[str], preprocessing: dict) -> int:
    """Worker task: decode `paths` into rows start, start + 1, ... of the memory-mapped array."""
    images = np.memmap(data_path, dtype=np.uint8, mode="r+", shape=shape)
    for offset, path in enumerate(paths):
        tensor = prepare_image(path, preprocessing)  # (C, H, W) uint8
        if tuple(tensor.shape) != shape[1:]:
            raise ImageError(f"{path}: decoded to shape {tuple(tensor.shape)}, expected {shape[1:]} like the others")
        images[start + offset] = tensor.numpy()
    images.flush()
    del images
    return len(paths)


def build_cache(
    paths: list[str | Path],
    labels: list[int] | torch.Tensor,
    preprocessing: dict,
    cache_dir: str | Path,
    workers: int | None = None,
) -> CachedImages:
    """Decode every image once into `cache_dir`, or reuse the complete cache made from the same files.

    The images are stored in the order of their sorted relative paths; `CachedImages.labels` and
    `.paths` follow that order. `workers` processes decode in parallel (0 decodes here; None uses
    every CPU). The preprocessing must give every image the same shape (set a `size`).
    """
    labels = labels.tolist() if isinstance(labels, torch.Tensor) else [int(label) for label in labels]
    if not paths:
        raise ValueError("build_cache needs at least one image path, got none")
    if len(paths) != len(labels):
        raise ValueError(f"paths and labels must have the same length, got {len(paths)} and {len(labels)}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(paths, labels, preprocessing)
    index_path = cache_dir / f"{key}{INDEX_SUFFIX}"
    if index_path.exists():
        return CachedImages(index_path)

    absolute = [Path(os.path.abspath(path)) for path in paths]
    root = _common_root(absolute)
    ordered = sorted(zip((str(path.relative_to(root)) for path in absolute), labels, strict=True))
    relative_paths = [relative for relative, _ in ordered]
    absolute_paths = [str(root / relative) for relative in relative_paths]
    first = prepare_image(absolute_paths[0], preprocessing)  # (C, H, W): the shape every image must share
    shape = (len(absolute_paths), *first.shape)

    # Temporary names carry the process id, so two builds of the same key never write one file.
    partial_data = cache_dir / f"{key}{DATA_SUFFIX}.partial-{os.getpid()}"
    partial_index = cache_dir / f"{key}{INDEX_SUFFIX}.partial-{os.getpid()}"
    try:
        with open(partial_data, "wb") as handle:
            handle.truncate(int(np.prod(shape)))  # a sparse file of the final size
        chunks = [(start, absolute_paths[start : start + CHUNK_SIZE]) for start in range(0, shape[0], CHUNK_SIZE)]
        workers = (os.cpu_count() or 1) if workers is None else workers
        if workers <= 0:
            for start, chunk in chunks:
                _decode_into(str(partial_data), shape, start, chunk, preprocessing)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), initializer=_single_threaded) as pool:
                futures = [
                    pool.submit(_decode_into, str(partial_data), shape, start, chunk, preprocessing)
                    for start, chunk in chunks
                ]
                try:
                    for future in futures:
                        future.result()  # re-raises a worker's ImageError with the file's name
                except BaseException:
                    for future in futures:
                        future.cancel()  # stop at the first bad file rather than decode the rest
                    raise
        with open(partial_data, "rb+") as handle:
            os.fsync(handle.fileno())
        index = {
            "format": CACHE_FORMAT,
            "key": key,
            "shape": list(shape),
            "root": str(root),
            "paths": relative_paths,
            "labels": [label for _, label in ordered],
            "preprocessing": preprocessing,
        }
        partial_index.write_text(json.dumps(index))
        # The data first, the index last: an index only ever names a complete data file.
        os.replace(partial_data, cache_dir / f"{key}{DATA_SUFFIX}")
        os.replace(partial_index, index_path)
    finally:
        partial_data.unlink(missing_ok=True)
        partial_index.unlink(missing_ok=True)
    return CachedImages(index_path)


class CachedImages:
    """A built cache opened read-only: `len`, `labels`, `paths`, and `batch(indices)` as uint8 (B, C, H, W)."""

    def __init__(self, index_path: str | Path):
        index_path = Path(index_path)
        try:
            index = json.loads(index_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{index_path}: not a readable cache index ({error})") from error
        if index.get("format") != CACHE_FORMAT:
            raise ValueError(f"{index_path}: cache format {index.get('format')!r}, expected {CACHE_FORMAT}")
        self.shape = tuple(index["shape"])
        data_path = index_path.with_suffix(DATA_SUFFIX)
        expected_bytes = int(np.prod(self.shape))
        if not data_path.is_file() or data_path.stat().st_size != expected_bytes:
            raise ValueError(f"{data_path}: missing or not {expected_bytes} bytes; delete {index_path} to rebuild")
        self.images = np.memmap(data_path, dtype=np.uint8, mode="r", shape=self.shape)  # (N, C, H, W)
        self.labels = torch.tensor(index["labels"], dtype=torch.long)  # (N,)
        self.root = Path(index["root"])
        self.paths = [str(self.root / relative) for relative in index["paths"]]
        self.preprocessing = index["preprocessing"]
        self.pin_memory = torch.cuda.is_available()

    def __len__(self) -> int:
        return self.shape[0]

    def batch(self, indices: torch.Tensor | np.ndarray | list[int], device: torch.device | str | None = None):
        """Images at `indices` as uint8 (B, C, H, W), in the order asked for.

        Rows are read in sorted order, so the disk is read forward; the batch lands in pinned memory
        when CUDA is available, and moves to `device` without blocking the host.
        """
        indices = np.asarray(torch.as_tensor(indices, dtype=torch.long).cpu())  # (B,)
        if indices.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {indices.shape}")
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices must lie in [0, {len(self)}), got {indices.min()}..{indices.max()}")
        order = np.argsort(indices, kind="stable")  # (B,)
        rows = self.images[indices[order]]  # (B, C, H, W), read in ascending order
        batch = torch.empty((len(indices), *self.shape[1:]), dtype=torch.uint8, pin_memory=self.pin_memory)
        batch.numpy()[order] = rows  # back to the order asked for
        if device is None:
            return batch
        return batch.to(device, non_blocking=self.pin_memory)
