"""What one training step needs (network, loss, optimiser, scaler, schedule) and the step itself."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from siamese.data.augment import augment_batch
from siamese.data.datasets import Splits, epoch_generator, normalise
from siamese.modeling.backbones import create_backbone, parse_backbone, resolve_architecture
from siamese.modeling.config import NETWORK_FIELDS, ModelConfig
from siamese.modeling.face_port import PRETRAINED_ARCHITECTURES
from siamese.modeling.losses import build_loss
from siamese.modeling.network import EmbeddingNet
from siamese.runtime import distributed
from siamese.runtime.precision import autocast_context, grad_scaler
from siamese.training.config import TrainConfig
from siamese.training.optim import build_optimizer, build_schedule
from siamese.training.samplers import steps_per_epoch


def build_model(config: TrainConfig, splits: Splits) -> EmbeddingNet:
    """The network the config describes; with --backbone --pretrained, the backbone's pretrained weights in."""
    channels, height, width = splits.train.images.shape[1:]
    backbone, training = None, {"dataset": splits.description, "preset": config.preset}
    if config.backbone:
        source = parse_backbone(config.backbone)
        backbone = resolve_architecture(source)  # saved models rebuild this, with no download
        training["backbone"] = {"source": config.backbone, "pretrained": config.pretrained}
    # The network's fields come from the training config by name: one list, in siamese.modeling.config.
    network = {key: getattr(config, key) for key in NETWORK_FIELDS if hasattr(config, key)}
    network.update(
        backbone=backbone,
        in_channels=int(channels),
        image_size=(int(height), int(width)),
        widths=tuple(config.widths or (32, 64, 128)),
    )
    model = EmbeddingNet.from_config(
        ModelConfig.from_dict({**network, "preprocessing": splits.preprocessing, "training": training})
    )
    if config.backbone and config.pretrained:
        pretrained = create_backbone(backbone, int(channels), pretrained_source=parse_backbone(config.backbone))
        model.backbone.load_state_dict(pretrained.state_dict())
    elif config.pretrained and config.architecture in PRETRAINED_ARCHITECTURES:
        # Weights that ship in an installed package (dlib's CC0 face descriptor, read from its file).
        pretrained = PRETRAINED_ARCHITECTURES[config.architecture]
        model.backbone.load_state_dict(pretrained.load().backbone.state_dict())
        model.training_info["origin"] = pretrained.origin()
    return model


@dataclass
class TrainingParts:
    """What one training step needs, built as `train` builds it (benchmarks and tests build the same)."""

    model: EmbeddingNet
    loss_function: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: object
    step_module: nn.Module  # the network (compiled with --compile) and the loss in one module, which DDP wraps


def build_training_parts(
    config: TrainConfig, splits: Splits, device: torch.device, precision: str, total_steps: int | None = None
) -> TrainingParts:
    """Network (channels-last, on `device`), loss, optimiser, gradient scaler and schedule for `config`.

    `total_steps` sizes the schedule; by default the run's, from the training set and the epochs.
    """
    # oneDNN and cuDNN run convolutions fastest on NHWC tensors.
    model = build_model(config, splits).to(device).to(memory_format=torch.channels_last)
    class_count = int(splits.train.labels.max()) + 1
    loss_function = build_loss(
        config.loss, config.margin, embedding_dim=config.embedding_dim, class_count=class_count, parts=config.parts
    ).to(device)
    optimizer = build_optimizer(config, [model, loss_function])
    if total_steps is None:
        total_steps = steps_per_epoch(config, len(splits.train), class_count) * config.epochs
    # The network and the loss (CosFace proxies are parameters) in one module, which DDP wraps.
    step_module = distributed.ModelAndLoss(torch.compile(model) if config.compile else model, loss_function)
    return TrainingParts(
        model, loss_function, optimizer, grad_scaler(device, precision), build_schedule(config, optimizer, total_steps),
        step_module,
    )  # fmt: skip


def augmentation_generator(
    seed: int, epoch: int, rank: int, device: torch.device, batch_generator: torch.Generator
) -> torch.Generator:
    """The generator the epoch's warps draw from.

    On a GPU it lives on the device, so drawing warp parameters needs no host transfer. On the CPU,
    a single process keeps drawing from the batch generator (seeded runs stay as they always were);
    other ranks get their own stream, so the ranks' shares are not warped alike.
    """
    if device.type != "cpu":
        generator = torch.Generator(device=device)
        return generator.manual_seed(seed * 100_003 + epoch + 7919 * rank)
    return epoch_generator(seed + 7919 * rank, epoch) if rank else batch_generator


def epoch_batches_on_device(batches: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """The epoch's index batches, moved to `device` in one pinned, non-blocking transfer."""
    if device.type == "cpu" or not batches:
        return batches
    flat = torch.cat(batches)  # (steps * b,) all of the epoch's indices
    flat = flat.pin_memory().to(device, non_blocking=True)
    return list(flat.split([len(batch) for batch in batches]))


def prepare_batch(
    pixels: torch.Tensor, config: TrainConfig, generator: torch.Generator, preprocessing: dict
) -> torch.Tensor:
    """Scale one uint8 batch (b, C, H, W) to [0, 1], warp and normalise it, on its device."""
    batch = pixels.float().div_(255.0)  # (b, C, H, W) in [0, 1]
    batch = augment_batch(batch, config.augment, generator, config.horizontal_flip)
    return normalise(batch, preprocessing).contiguous(memory_format=torch.channels_last)


def read_ahead(images, batches: list[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
    """uint8 batches read from a streamed image set (`siamese.data.cache.MappedImages`), each on `device`.

    A background thread reads the next batch from the memory map while the current one trains
    (numpy's copy releases the GIL); batches land in pinned memory and move without blocking.
    """
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(images.__getitem__, batches[0])
        for position in range(len(batches)):
            batch = pending.result()  # (b, C, H, W) uint8 on the host
            if position + 1 < len(batches):
                pending = reader.submit(images.__getitem__, batches[position + 1])
            yield batch.to(device, non_blocking=batch.is_pinned())


def train_step(
    step_module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule,
    batch: torch.Tensor,
    batch_labels: torch.Tensor,
    device: torch.device,
    precision: str,
) -> torch.Tensor:
    """One optimiser step; returns the loss on the device (reading it is left to the caller).

    Embeddings run under autocast; distances and losses run in fp32 outside it (bf16 rounding is
    the size of the distances between positive pairs). With bf16 or fp32 nothing here waits for
    the GPU; fp16's scaler reads one flag per step to skip steps with overflowed gradients.
    """
    loss = step_module(batch, batch_labels, lambda: autocast_context(device, precision))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    schedule.step()
    return loss
