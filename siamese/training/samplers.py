"""How a training epoch is cut into index batches: samplers registered by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from siamese._registry import Registry
from siamese.data.datasets import class_balanced_batches, shuffled_batches
from siamese.data.pairs import PairSampler
from siamese.training.config import TrainConfig

SAMPLERS: Registry = Registry("sampler")


@dataclass(frozen=True)
class Sampler:
    """The number of steps in an epoch, and the epoch's index batches."""

    steps: Callable[[TrainConfig, int, int | None], int]
    batches: Callable[[TrainConfig, torch.Tensor, torch.Generator], Iterator[torch.Tensor]]


def _shuffle_steps(config: TrainConfig, train_size: int, class_count: int | None) -> int:
    return math.ceil(train_size / config.batch_size)


def _shuffle_batches(config: TrainConfig, labels: torch.Tensor, generator: torch.Generator) -> Iterator[torch.Tensor]:
    yield from shuffled_batches(labels, config.batch_size, generator)


def _balanced_steps(config: TrainConfig, train_size: int, class_count: int | None) -> int:
    # The sampler shrinks a batch to the classes there are; count the batches it will make.
    classes_per_batch = min(config.classes_per_batch, class_count or config.classes_per_batch)
    return max(1, train_size // (classes_per_batch * config.samples_per_class))


def _balanced_batches(config: TrainConfig, labels: torch.Tensor, generator: torch.Generator) -> Iterator[torch.Tensor]:
    yield from class_balanced_batches(labels, config.classes_per_batch, config.samples_per_class, generator)


def _pair_steps(config: TrainConfig, train_size: int, class_count: int | None) -> int:
    # 0 pairs per epoch means one pair per training image, as the faces article's data set does.
    pairs = config.pairs_per_epoch or train_size
    return max(1, math.ceil(2 * pairs / config.batch_size))


def _pair_batches(config: TrainConfig, labels: torch.Tensor, generator: torch.Generator) -> Iterator[torch.Tensor]:
    pairs_per_batch = max(1, config.batch_size // 2)
    sampler = PairSampler(labels)  # labels grouped once per epoch, not once per batch
    for _ in range(_pair_steps(config, len(labels), None)):
        first, second, _same = sampler.sample(pairs_per_batch, generator=generator)
        yield torch.stack([first, second], dim=1).flatten()  # (2 * pairs,)


SAMPLERS.add("shuffle", Sampler(_shuffle_steps, _shuffle_batches), "plain shuffled batches")
SAMPLERS.add("balanced", Sampler(_balanced_steps, _balanced_batches), "P classes x K images per batch")
SAMPLERS.add("pairs", Sampler(_pair_steps, _pair_batches), "pairs, half same and half different, interleaved")


def steps_per_epoch(config: TrainConfig, train_size: int, class_count: int | None = None) -> int:
    return SAMPLERS.get(config.sampler).steps(config, train_size, class_count)


def epoch_batches(config: TrainConfig, labels: torch.Tensor, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches for one epoch; for the pair sampler, pairs are interleaved (a0, b0, a1, b1, ...)."""
    return SAMPLERS.get(config.sampler).batches(config, labels, generator)
