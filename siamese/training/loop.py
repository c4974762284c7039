"""The training loop: tensors on the device, seeded batch orders, atomic checkpoints, exact resume."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from siamese.data.augment import random_affine, random_brightness_contrast
from siamese.data.datasets import (
    Splits,
    class_balanced_batches,
    epoch_generator,
    load_mnist,
    load_offline_digits,
    normalise,
    shuffled_batches,
)
from siamese.evaluation.retrieval import retrieval_metrics
from siamese.modeling.losses import build_loss
from siamese.modeling.network import EmbeddingNet
from siamese.runtime.precision import autocast_context, configure_backends, grad_scaler, pick_device, pick_precision
from siamese.training.config import TrainConfig

CHECKPOINT_NAME = "checkpoint.pt"
# Fields that only say how to run, not what is trained: they may differ when resuming.
RUN_ONLY_FIELDS = {
    "resume",
    "progress",
    "device",
    "precision",
    "compile",
    "out",
    "eval_every",
    "data_root",
    "download",
    "stream",
    "cache_dir",
}
# The progress bar's running loss is read from the device (a host sync) once per this many steps.
LOG_EVERY_STEPS = 25
# Data sets whose test classes are the training classes (kNN against training references works).
SHARED_CLASS_DATASETS = ("mnist", "digits")


@dataclass
class TrainResult:
    model: EmbeddingNet
    metrics: dict
    history: list[dict] = field(default_factory=list)
    out: Path | None = None
    device: str = "cpu"
    precision: str = "fp32"
    is_main: bool = True  # False on the other processes of a torchrun job, which save nothing


def load_splits(config: TrainConfig) -> Splits:
    """The training, validation and test sets that `config.dataset` names."""
    if config.dataset in SHARED_CLASS_DATASETS and (config.val_classes or config.val_groups or config.test_groups):
        raise ValueError(
            f"--val-classes, --val-groups and --test-groups need classes unseen in training; {config.dataset} "
            f"tests its own classes (use --val-fraction)"
        )
    splits = _load_train_and_test(config)
    if config.dataset in SHARED_CLASS_DATASETS and config.val_fraction > 0:
        splits = with_validation(splits, config)
    return splits


def with_validation(splits: Splits, config: TrainConfig) -> Splits:
    """For digits, whose test classes are the training classes: a seeded share of each class's training
    images becomes the validation set (image-disjoint, since a class-disjoint one is impossible here)."""
    from siamese.data.datasets import hold_out_per_class

    train, validation = hold_out_per_class(splits.train, config.val_fraction, seed=config.seed)
    description = {
        **splits.description,
        "train_size": len(train),
        "validation_size": len(validation),
        "validation": f"{config.val_fraction:.0%} of each class's training images, never trained on",
    }
    return Splits(train, splits.test, splits.preprocessing, description, validation)


def _load_train_and_test(config: TrainConfig) -> Splits:
    if config.dataset == "digits":
        return load_offline_digits()
    if config.dataset == "mnist":
        return load_mnist(config.data_root or "data", download=config.download)
    from siamese.data import folders

    if config.data_root is None:
        raise ValueError(f"--dataset {config.dataset} needs --data-root pointing at a folder of class sub-folders")
    size = config.image_size
    if size is None:
        # Folder data: a size that fits the images (median aspect ratio); faces: the AT&T photos' own.
        size = (
            [112, 92]
            if config.dataset == "att_faces"
            else folders.infer_image_size(folders.image_paths(config.data_root, config.class_depth), seed=config.seed)
        )
    preprocessing = folders.faces_preprocessing(size=tuple(size), grayscale=config.grayscale)
    if config.backbone:
        from siamese.modeling.backbones import data_config, parse_backbone

        # The input size, mean and std the backbone's weights were trained with, unless a size is given.
        backbone_data = data_config(parse_backbone(config.backbone))
        preprocessing.update(mean=backbone_data["mean"], std=backbone_data["std"])
        if not config.image_size:
            preprocessing["size"] = backbone_data["size"]
        if config.grayscale:
            preprocessing.update(mean=sum(backbone_data["mean"]) / 3, std=sum(backbone_data["std"]) / 3)
    if config.dataset == "att_faces":
        test_classes = config.test_classes or list(folders.ATT_TEST_CLASSES)
        return folders.load_att_faces(
            config.data_root,
            preprocessing=preprocessing,
            test_classes=test_classes,
            val_classes=config.val_classes,
            val_fraction=config.val_fraction,
            seed=config.seed,
        )
    preprocessing["kind"] = "folder"
    cache_dir = None
    if should_stream(config, preprocessing):
        cache_dir = config.cache_dir or default_cache_dir()
        if os.environ.get("RANK", "0") == "0":
            print(f"Streaming {config.data_root} from a decoded-image cache in {cache_dir} (--stream never: in memory)")
    return folders.load_folder_splits(
        config.data_root,
        preprocessing,
        cache_dir=cache_dir,
        test_classes=config.test_classes,
        test_fraction=config.test_fraction,
        seed=config.seed,
        skip_unreadable=config.skip_unreadable,
        class_depth=config.class_depth,
        test_groups=config.test_groups,
        val_classes=config.val_classes,
        val_groups=config.val_groups,
        val_fraction=config.val_fraction,
    )


# Decoded folders larger than this are streamed from disk under --stream auto (and never more than a
# quarter of the machine's memory is held): the in-memory path keeps all images on the device.
STREAM_ABOVE_BYTES = 4 * 2**30


def default_cache_dir() -> Path:
    """Where decoded-image caches live unless --cache-dir says: $XDG_CACHE_HOME/siamese/decoded."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "siamese" / "decoded"


def should_stream(config: TrainConfig, preprocessing: dict) -> bool:
    """Whether a folder's images are streamed from a cache on disk rather than decoded into memory.

    "auto" streams when the decoded uint8 images (file count x channels x height x width) would
    exceed min(4 GiB, a quarter of physical memory); only file names are read to decide.
    """
    if config.stream != "auto":
        return config.stream == "always"
    from siamese.data import folders

    count = len(folders.image_paths(config.data_root, config.class_depth))
    height, width = preprocessing["size"]
    channels = 1 if preprocessing.get("grayscale", True) else 3
    limit = min(STREAM_ABOVE_BYTES, _physical_memory_bytes() // 4)
    return count * channels * height * width > limit


def _physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8 * 2**30


def build_model(config: TrainConfig, splits: Splits) -> EmbeddingNet:
    """The network the config describes; with --backbone --pretrained, the backbone's pretrained weights in."""
    channels, height, width = splits.train.images.shape[1:]
    backbone, training = None, {"dataset": splits.description, "preset": config.preset}
    if config.backbone:
        from siamese.modeling.backbones import parse_backbone, resolve_architecture

        source = parse_backbone(config.backbone)
        backbone = resolve_architecture(source)  # saved models rebuild this, with no download
        training["backbone"] = {"source": config.backbone, "pretrained": config.pretrained}
    from siamese.modeling.config import NETWORK_FIELDS, ModelConfig

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
        from siamese.modeling.backbones import create_backbone

        pretrained = create_backbone(backbone, int(channels), pretrained_source=parse_backbone(config.backbone))
        model.backbone.load_state_dict(pretrained.state_dict())
    return model


def build_optimizer(config: TrainConfig, modules: list[nn.Module]) -> torch.optim.Optimizer:
    """One optimizer over the model and any loss that learns (e.g. class proxies)."""
    parameters = [parameter for module in modules for parameter in module.parameters()]
    # On a GPU, one fused kernel updates every parameter: small models are bound by kernel launches.
    fused = True if parameters and all(parameter.is_cuda for parameter in parameters) else None
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be adam, adamw or sgd, got {config.optimizer!r}")


def steps_per_epoch(config: TrainConfig, train_size: int, class_count: int | None = None) -> int:
    if config.sampler == "shuffle":
        return math.ceil(train_size / config.batch_size)
    if config.sampler == "balanced":
        # The sampler shrinks a batch to the classes there are; count the batches it will make.
        classes_per_batch = min(config.classes_per_batch, class_count or config.classes_per_batch)
        return max(1, train_size // (classes_per_batch * config.samples_per_class))
    if config.sampler == "pairs":
        # 0 pairs per epoch means one pair per training image, as the faces article's data set does.
        pairs = config.pairs_per_epoch or train_size
        return max(1, math.ceil(2 * pairs / config.batch_size))
    raise ValueError(f"sampler must be shuffle, balanced or pairs, got {config.sampler!r}")


def build_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.2)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"schedule must be constant, onecycle or cosine, got {config.schedule!r}")


def epoch_batches(config: TrainConfig, labels: torch.Tensor, generator: torch.Generator):
    """Index batches for one epoch; for the pair sampler, pairs are interleaved (a0, b0, a1, b1, ...)."""
    if config.sampler == "shuffle":
        yield from shuffled_batches(labels, config.batch_size, generator)
    elif config.sampler == "balanced":
        yield from class_balanced_batches(labels, config.classes_per_batch, config.samples_per_class, generator)
    elif config.sampler == "pairs":
        from siamese.data.pairs import PairSampler

        pairs_per_batch = max(1, config.batch_size // 2)
        sampler = PairSampler(labels)  # labels grouped once per epoch, not once per batch
        for _ in range(steps_per_epoch(config, len(labels))):
            first, second, _same = sampler.sample(pairs_per_batch, generator=generator)
            yield torch.stack([first, second], dim=1).flatten()  # (2 * pairs,)
    else:
        raise ValueError(f"sampler must be shuffle, balanced or pairs, got {config.sampler!r}")


def augment_batch(
    images: torch.Tensor, kind: str, generator: torch.Generator, horizontal_flip: bool = False
) -> torch.Tensor:
    """Random warps of float images in [0, 1], (B, C, H, W).

    Digits are white on black, so black fills the borders; photos and folder images are filled with
    each image's own background colour (its border's median), so no black wedges appear.
    """
    if kind == "none":
        return images
    if kind == "digits":
        return random_affine(images, generator, degrees=12.0, translate=0.08, scale=(0.85, 1.1), shear=10.0)
    if kind == "faces":
        warped = random_affine(
            images,
            generator,
            degrees=8.0,
            translate=0.06,
            scale=(0.9, 1.1),
            horizontal_flip=horizontal_flip,
            fill="border",
        )
        return random_brightness_contrast(warped, generator, strength=0.2)
    raise ValueError(f"augment must be none, digits or faces, got {kind!r}")


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
    from siamese.runtime import distributed

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


def atomic_torch_save(state: dict, path: Path) -> None:
    """Write to a temporary file beside `path`, then rename: a killed run never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path, config: TrainConfig) -> dict:
    """Read a checkpoint (tensors and plain data only) and check it was made by the same recipe."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = state["config"]
    differing = sorted(
        name for name, value in config.to_dict().items() if name not in RUN_ONLY_FIELDS and saved.get(name) != value
    )
    if differing:
        details = ", ".join(
            f"{name}: checkpoint {saved.get(name)!r} vs now {getattr(config, name)!r}" for name in differing
        )
        raise ValueError(f"--resume: {path} was written with a different config ({details})")
    return state


def evaluate(model: EmbeddingNet, splits: Splits, config: TrainConfig, precision: str, final: bool) -> dict:
    """Per-epoch figures on the validation set (the test set when there is none), or the final test report.

    Where classes are shared (digits), retrieval scores held-out images against the training
    images; for every data set, verification and one-shot figures come from pairs of held-out images.
    """
    from siamese.evaluation.verification import verification_report

    held_out = splits.test if final or splits.validation is None else splits.validation
    if len(held_out) == 0 or len(torch.unique(held_out.labels)) < 2:
        return {}  # --test-fraction 0 and no validation: nothing held out to measure on
    metrics = {}
    if config.dataset in SHARED_CLASS_DATASETS:
        metrics.update(retrieval_metrics(model, splits.train, held_out, config.knn_k, precision))
        if not final:
            return metrics  # kNN is the per-epoch figure here; pair metrics only at the end
    embeddings = model.encode(held_out.images, batch_size=1024, precision=precision)  # (Q, D)
    labels = held_out.labels.cpu()
    ways = min(10, len(torch.unique(labels)))
    draws = config.one_shot_draws if final else max(1, config.one_shot_draws // 4)
    max_pairs = 2_000_000 if final else 200_000
    report = verification_report(embeddings, labels, ways=ways, draws=draws, seed=config.seed, max_pairs=max_pairs)
    # Thresholds fitted on these very pairs would flatter them: thresholds come from validation only.
    for key in ("threshold_eer", "threshold_best_accuracy", "best_accuracy"):
        report.pop(key, None)
    if not final:
        report.pop("distance_histogram", None)
    metrics.update(report)
    if final and model.calibration.get("threshold") is not None:
        from siamese.evaluation.calibration import measure_on_test

        open_set = config.dataset not in SHARED_CLASS_DATASETS
        measured = measure_on_test(embeddings, labels, model.calibration, open_set=open_set, seed=config.seed)
        model.calibration["test"] = measured
        metrics.update(_operating_point_figures(model.calibration, measured))
    return metrics


def calibrate_on_validation(model: EmbeddingNet, splits: Splits, config: TrainConfig, precision: str) -> dict:
    """The thresholds and caution margin, chosen on the validation images alone ({} without validation)."""
    from siamese.evaluation.calibration import calibrate

    validation = splits.validation
    if validation is None or len(validation) < 2 or len(torch.unique(validation.labels)) < 2:
        return {}
    embeddings = model.encode(validation.images, batch_size=1024, precision=precision)  # (V, D)
    if config.dataset in SHARED_CLASS_DATASETS:
        measured_on = f"{len(validation)} validation images ({splits.description.get('validation')})"
    else:
        names = ", ".join(sorted(validation.class_names))
        measured_on = f"{len(validation)} images of the validation classes {names}, unseen in training and testing"
    open_set = config.dataset not in SHARED_CLASS_DATASETS
    return calibrate(embeddings, validation.labels.cpu(), measured_on, open_set=open_set, seed=config.seed)


def _operating_point_figures(calibration: dict, measured: dict) -> dict:
    """Flat metrics.json keys for the test figures at the stored thresholds."""
    at_threshold, at_strict = measured["at_threshold"], measured["at_threshold_strict"]
    figures = {
        "threshold": calibration["threshold"],
        "false_accept_rate": at_threshold["false_accept_rate"],
        "false_reject_rate": at_threshold["false_reject_rate"],
        "accuracy_at_threshold": at_threshold["accuracy"],
        "threshold_strict": calibration["threshold_strict"],
        "false_accept_rate_strict": at_strict["false_accept_rate"],
        "false_reject_rate_strict": at_strict["false_reject_rate"],
    }
    open_set = measured.get("open_set") or {}
    for key in ("known_identified", "unknown_rejected"):
        if open_set.get(key) is not None:
            figures[f"open_set_{key}"] = open_set[key]
    return figures


def train(
    config: TrainConfig,
    splits: Splits | None = None,
    stop_after_epochs: int | None = None,
    final_evaluation: bool = True,
) -> TrainResult:
    """Train, evaluate on validation after each epoch, checkpoint, calibrate on validation, test once, return.

    Under torchrun every process trains its share of each global batch (see `siamese.runtime.distributed`);
    the main process alone prints, evaluates and checkpoints, and the others return no metrics.
    `stop_after_epochs` ends the run early as if it were killed (tests use it to check resume);
    `final_evaluation=False` skips the full test-set evaluation (throughput benchmarks).
    """
    from siamese.runtime import distributed

    device = pick_device(config.device)
    topology = distributed.setup(device.type)
    if topology.distributed and device.type == "cuda":
        device = torch.device("cuda", topology.local_rank)
    main = topology.is_main
    precision = pick_precision(device, config.precision)
    configure_backends(device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / CHECKPOINT_NAME

    if splits is None:
        # One process per machine loads first (and builds any decoded-image cache); the others then
        # find the cache complete instead of decoding the same folder side by side.
        first_on_machine = topology.local_rank == 0
        if topology.distributed and not first_on_machine:
            torch.distributed.barrier()
        splits = load_splits(config)
        if topology.distributed and first_on_machine:
            torch.distributed.barrier()
    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    parts = build_training_parts(config, splits, device, precision)
    model, loss_function, optimizer, scaler, schedule = (
        parts.model, parts.loss_function, parts.optimizer, parts.scaler, parts.schedule
    )  # fmt: skip
    step_module = parts.step_module
    if topology.distributed:
        from torch.nn.parallel import DistributedDataParallel

        step_module = DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)

    history: list[dict] = []
    start_epoch = 0
    if config.resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, config)
        model.load_state_dict(state["model"])
        loss_function.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        schedule.load_state_dict(state["schedule"])
        history = json.loads(state["history"])
        start_epoch = int(state["epoch"])
        if main:
            print(f"Resuming from {checkpoint_path} after epoch {start_epoch} (step {state['step']})")

    # Small sets: every image on the device once. Streamed folders: batches read from the cache on disk.
    streamed = splits.train.streamed
    images = splits.train.images if streamed else splits.train.images.to(device)  # (N, C, H, W) uint8
    labels = splits.train.labels.to(device)  # (N,)
    if main:
        processes = f", {topology.world_size} processes" if topology.distributed else ""
        print(
            f"Training {config.architecture} ({sum(p.numel() for p in model.parameters()):,} parameters) on "
            f"{splits.description.get('name')}: {len(splits.train)} train / {len(splits.test)} test images, "
            f"device {device}, precision {precision}{processes}"
        )
    show_progress = config.progress and main
    train_seconds = history[-1]["train_seconds"] if history else 0.0
    last_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, stop_after_epochs)
    for epoch in range(start_epoch, last_epoch):
        model.train()
        loss_function.train()
        generator = epoch_generator(config.seed, epoch)  # the same global batches on every rank
        augment_generator = augmentation_generator(config.seed, epoch, topology.rank, device, generator)
        # Dropout draws from the global generator: reseeding per epoch makes a resumed epoch identical.
        torch.manual_seed(config.seed * 1_000_003 + epoch + 104_729 * topology.rank)
        # Index batches from the label array on the host (prepared once per epoch), then on the device.
        host_batches = [
            distributed.shard(batch, topology) for batch in epoch_batches(config, splits.train.labels, generator)
        ]
        batches = epoch_batches_on_device(host_batches, device)
        pixels = read_ahead(images, host_batches, device) if streamed else (images[index] for index in batches)
        progress = tqdm(batches, desc=f"Epoch {epoch + 1}/{config.epochs}", disable=not show_progress, leave=False)
        running_loss = torch.zeros((), device=device)  # summed on the device: no host sync per step
        seen = 0
        started = time.perf_counter()
        for batch_index, batch_pixels in zip(progress, pixels, strict=True):
            batch = prepare_batch(batch_pixels, config, augment_generator, splits.preprocessing)
            loss = train_step(step_module, optimizer, scaler, schedule, batch, labels[batch_index], device, precision)
            running_loss += loss.detach()
            seen += 1
            if show_progress and seen % LOG_EVERY_STEPS == 0:
                progress.set_postfix(loss=f"{float(running_loss) / seen:.4f}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - started
        record = {
            "epoch": epoch + 1,
            "loss": float(running_loss) / max(seen, 1),
            "train_seconds": round(train_seconds, 3),
        }
        if main and config.eval_every and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
            record.update(_short_metrics(evaluate(model, splits, config, precision, final=False)))
        history.append(record)
        if main:
            print(_format_record(record))
            if epoch == start_epoch and last_epoch - start_epoch > 1:
                remaining = (last_epoch - epoch - 1) * (time.perf_counter() - started)
                print(
                    f"epoch {epoch + 1} took {_duration(time.perf_counter() - started)}; about "
                    f"{_duration(remaining)} more for the remaining {last_epoch - epoch - 1} epochs (evaluation "
                    f"included)"
                )
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "loss": loss_function.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "scaler": scaler.state_dict(),
                    "config": config.to_dict(),
                    "epoch": epoch + 1,
                    "step": (epoch + 1) * len(batches),
                    "history": json.dumps(history),
                },
                checkpoint_path,
            )
        if topology.distributed:
            torch.distributed.barrier()  # the others wait while the main process evaluates and saves

    model.eval()
    finished = bool(history) and history[-1]["epoch"] == config.epochs
    metrics = {}
    if finished and final_evaluation and main:
        # Thresholds first, from validation alone; the test set then only measures them.
        model.calibration = calibrate_on_validation(model, splits, config, precision)
        metrics = evaluate(model, splits, config, precision, final=True)
    return TrainResult(
        model=model.cpu(),
        metrics=metrics,
        history=history,
        out=out,
        device=str(device),
        precision=precision,
        is_main=main,
    )


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else (f"{minutes} min {seconds} s" if minutes else f"{seconds} s")


def _short_metrics(metrics: dict) -> dict:
    keys = ("knn_accuracy", "precision_at_1", "map_at_r", "roc_auc", "eer", "one_shot_accuracy")
    return {key: round(float(metrics[key]), 5) for key in keys if key in metrics}


def _format_record(record: dict) -> str:
    parts = [f"epoch {record['epoch']}", f"loss {record['loss']:.4f}", f"train {record['train_seconds']:.1f}s"]
    for key, label in (
        ("knn_accuracy", "kNN acc"),
        ("roc_auc", "ROC AUC"),
        ("eer", "EER"),
        ("one_shot_accuracy", "1-shot"),
    ):
        if key in record:
            value = record[key]
            parts.append(f"{label} {value:.4f}" if key == "roc_auc" else f"{label} {value:.2%}")
    return " | ".join(parts)
