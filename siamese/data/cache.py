"""A decoded-image cache on disk, for image folders too big to hold in memory.

Each image is decoded and resized once into a uint8 memory-mapped array (N, C, H, W); a small JSON
index beside it holds the paths and labels. The cache's name is a hash of what it was made from
(relative paths, labels, file sizes and modification times, preprocessing), so a changed folder
gets a fresh cache and an unchanged one is reused at once. A build writes under temporary names
and renames when complete, so a killed build never looks complete.

`prepare_in_processes` is the one way to prepare many images across processes: the cache's build uses
it, and so does `siamese embed`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from siamese.data.images import ImageError, prepare_image

# 2: images are turned upright by their EXIF orientation before they are prepared.
CACHE_FORMAT = 2
INDEX_SUFFIX = ".json"
DATA_SUFFIX = ".uint8"
# Images per worker task: large enough that process overhead is small, small enough to spread the work.
CHUNK_SIZE = 256


def _absolute_and_relative(paths: list[str | Path]) -> tuple[str, list[str], list[str]]:
    """The folder all paths share, and each path absolute and relative to it (plain strings: at
    100,000 files, pathlib objects cost seconds on every start)."""
    absolute = [os.path.abspath(path) for path in paths]
    root = os.path.commonpath([os.path.dirname(path) for path in absolute])
    prefix = len(root.rstrip(os.sep)) + 1
    return root, absolute, [path[prefix:] for path in absolute]


def cache_key(paths: list[str | Path], labels: list[int], preprocessing: dict) -> str:
    """A hash of the sorted relative paths with their labels, sizes and modification times, and the preprocessing.

    Touching, replacing or relabelling any file, or changing the preprocessing, changes the key.
    """
    _, absolute, relative_paths = _absolute_and_relative(paths)
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CACHE_FORMAT, "preprocessing": preprocessing}, sort_keys=True).encode())
    for relative, label, path in sorted(zip(relative_paths, (int(label) for label in labels), absolute, strict=True)):
        status = os.stat(path)
        digest.update(f"{relative}\0{label}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _single_threaded() -> None:
    """Worker start-up: one intra-op thread, as DataLoader workers do, since OpenMP pools do not survive a fork."""
    torch.set_num_threads(1)


def _prepare_chunk(
    start: int, paths: list[str], names: list[str | None], preprocessing: dict, into: tuple[str, tuple] | None
) -> list[np.ndarray | ImageError | None]:
    """Worker task: `prepare_image` of each path; an unusable file gives its `ImageError` instead.

    Each image comes back as a uint8 (C, H, W) array (an array pickles by value; a tensor would travel as a
    shared-memory handle), or with `into` is written to row start, start + 1, ... of that memory-mapped file
    and None comes back in its place.
    """
    rows = None if into is None else np.memmap(into[0], dtype=np.uint8, mode="r+", shape=into[1])
    results: list[np.ndarray | ImageError | None] = []
    for offset, (path, name) in enumerate(zip(paths, names, strict=True)):
        try:
            image = prepare_image(path, preprocessing, name=name).numpy()  # (C, H, W) uint8
        except ImageError as error:
            results.append(error)
            continue
        if rows is None:
            results.append(image)
        elif image.shape != rows.shape[1:]:
            message = f"decoded to shape {image.shape}, expected {rows.shape[1:]} like the others"
            results.append(ImageError(f"{name or path}: {message}"))
        else:
            rows[start + offset] = image
            results.append(None)
    if rows is not None:
        rows.flush()
        del rows
    return results


def prepare_in_processes(
    paths: Sequence[str | Path],
    preprocessing: dict,
    names: Sequence[str] | None = None,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    into: tuple[str, tuple[int, ...]] | None = None,
) -> Iterator[torch.Tensor | ImageError | None]:
    """`prepare_image` of every path, in `workers` processes (0: in this process; None: one per CPU), in order.

    Yields, per path, its uint8 (C, H, W) tensor, or the `ImageError` of a file that cannot be used (the caller
    skips or raises it). With `into`, a memory-mapped uint8 file and its (N, C, H, W) shape, image i is written
    to row i there and None is yielded, so the pixels never pass through a pipe; an image of another shape is
    an `ImageError`. Only a few chunks of `chunk_size` images run ahead of the caller; closing the iterator
    cancels the chunks not yet started.
    """
    names = [None] * len(paths) if names is None else list(names)
    chunks = [
        (start, [str(path) for path in paths[start : start + chunk_size]], names[start : start + chunk_size])
        for start in range(0, len(paths), chunk_size)
    ]
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers <= 0 or not chunks:
        for chunk in chunks:
            yield from _as_tensors(_prepare_chunk(*chunk, preprocessing, into))
        return
    workers = min(workers, len(chunks))
    with ProcessPoolExecutor(max_workers=workers, initializer=_single_threaded) as pool:
        running: deque[Future] = deque()
        try:
            for chunk in chunks:
                running.append(pool.submit(_prepare_chunk, *chunk, preprocessing, into))
                # Two chunks a worker in flight keep every worker busy without holding a large folder's pixels.
                if len(running) >= 2 * workers:
                    yield from _as_tensors(running.popleft().result())
            while running:
                yield from _as_tensors(running.popleft().result())
        finally:
            for future in running:
                future.cancel()  # the caller stopped (a file it will not skip, an interrupt): start nothing more


def _as_tensors(results: list[np.ndarray | ImageError | None]) -> Iterator[torch.Tensor | ImageError | None]:
    for result in results:
        yield torch.from_numpy(result) if isinstance(result, np.ndarray) else result


def build_cache(
    paths: list[str | Path],
    labels: list[int] | torch.Tensor,
    preprocessing: dict,
    cache_dir: str | Path,
    workers: int | None = None,
    skip_unreadable: bool = False,
) -> CachedImages:
    """Decode every image once into `cache_dir`, or reuse the complete cache made from the same files.

    The images are stored in the order of their sorted relative paths; `CachedImages.labels` and
    `.paths` follow that order. `workers` processes decode in parallel (0 decodes here; None uses
    every CPU). The preprocessing must give every image the same shape (set a `size`). An unreadable
    file stops the build with its name, or with `skip_unreadable` is listed in the cache's
    `unreadable` (its row stays blank; loaders leave it out).
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

    root, _, relative = _absolute_and_relative(paths)
    ordered = sorted(zip(relative, labels, strict=True))
    relative_paths = [relative for relative, _ in ordered]
    absolute_paths = [os.path.join(root, relative) for relative in relative_paths]
    shape = (len(absolute_paths), *_first_shape(absolute_paths, preprocessing, skip_unreadable))

    # Temporary names carry the process id, so two builds of the same key never write one file.
    partial_data = cache_dir / f"{key}{DATA_SUFFIX}.partial-{os.getpid()}"
    partial_index = cache_dir / f"{key}{INDEX_SUFFIX}.partial-{os.getpid()}"
    try:
        with open(partial_data, "wb") as handle:
            handle.truncate(int(np.prod(shape)))  # a sparse file of the final size
        unreadable: list[tuple[int, str]] = []
        into = (str(partial_data), shape)
        with closing(prepare_in_processes(absolute_paths, preprocessing, workers=workers, into=into)) as prepared:
            for row, result in enumerate(prepared):
                if isinstance(result, ImageError):
                    if not skip_unreadable:
                        raise result  # closing the iterator stops the workers rather than decode the rest
                    unreadable.append((row, str(result)))
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
            "unreadable": [[relative_paths[row], message] for row, message in sorted(unreadable)],
        }
        partial_index.write_text(json.dumps(index))
        # The data first, the index last: an index only ever names a complete data file.
        os.replace(partial_data, cache_dir / f"{key}{DATA_SUFFIX}")
        os.replace(partial_index, index_path)
    finally:
        partial_data.unlink(missing_ok=True)
        partial_index.unlink(missing_ok=True)
    return CachedImages(index_path)


def _first_shape(paths: list[str], preprocessing: dict, skip_unreadable: bool) -> tuple[int, ...]:
    """The (C, H, W) every image must share: that of the first readable file."""
    for path in paths:
        try:
            return tuple(prepare_image(path, preprocessing).shape)
        except ImageError:
            if not skip_unreadable:
                raise
    raise ImageError(f"none of the {len(paths)} image files could be read")


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
        self.paths = [os.path.join(index["root"], relative) for relative in index["paths"]]
        self.preprocessing = index["preprocessing"]
        # Files that could not be decoded (built with skip_unreadable): (path, reason); their rows are blank.
        self.unreadable = [
            (os.path.join(index["root"], relative), message) for relative, message in index.get("unreadable", [])
        ]
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


class MappedImages:
    """Rows of a `CachedImages`, in a chosen order, standing in for a uint8 (N, C, H, W) tensor.

    Nothing is read until asked for: indexing with a slice or with indices returns those images as
    a uint8 tensor (read from the memory map), and `subset` makes a new view without reading. A
    training set of a million images thus costs its index, not its pixels, in memory.
    """

    dtype = torch.uint8
    ndim = 4
    device = torch.device("cpu")

    def __init__(self, cache: CachedImages, rows: np.ndarray | torch.Tensor | list[int]):
        self.cache = cache
        self.rows = np.asarray(torch.as_tensor(rows, dtype=torch.long))  # (N,) rows of the cache
        if self.rows.ndim != 1:
            raise ValueError(f"rows must be 1-D, got shape {self.rows.shape}")

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.cache.shape[1:]))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: slice | torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        """Images as uint8 (B, C, H, W) on the CPU (in pinned memory where CUDA is available)."""
        if isinstance(key, slice):
            return self.cache.batch(self.rows[key])
        if isinstance(key, int):
            return self.cache.batch(self.rows[[key]])[0]
        return self.cache.batch(self.rows[np.asarray(torch.as_tensor(key, dtype=torch.long).cpu())])

    def subset(self, indices: torch.Tensor | np.ndarray | list[int]) -> MappedImages:
        """The images at `indices`, still unread."""
        return MappedImages(self.cache, self.rows[np.asarray(torch.as_tensor(indices, dtype=torch.long).cpu())])

    def to(self, device: torch.device | str) -> torch.Tensor:
        """Every image read into one tensor on `device` (only for sets that fit in memory)."""
        return self[:].to(device)
