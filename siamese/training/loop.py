"""The training loop: tensors on the device, seeded batch orders, a checkpoint per epoch, exact resume."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from siamese.data.datasets import Splits, epoch_generator
from siamese.modeling.network import EmbeddingNet
from siamese.runtime import distributed
from siamese.training import checkpoint, steps
from siamese.training.config import TrainConfig
from siamese.training.evaluate import calibrate_on_validation, evaluate
from siamese.training.progress import announce, report_epoch, short_metrics
from siamese.training.run import Run, load_run_splits, start_run
from siamese.training.samplers import epoch_batches

# The progress bar's running loss is read from the device (a host sync) once per this many steps.
LOG_EVERY_STEPS = 25


@dataclass
class TrainResult:
    model: EmbeddingNet
    metrics: dict
    history: list[dict] = field(default_factory=list)
    out: Path | None = None
    device: str = "cpu"
    precision: str = "fp32"
    is_main: bool = True  # False on the other processes of a torchrun job, which save nothing


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
    run = start_run(config)
    splits = splits if splits is not None else load_run_splits(config, run)
    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    parts = steps.build_training_parts(config, splits, run.device, run.precision)
    step_module = run.wrap(parts.step_module)
    history, start_epoch = checkpoint.resume(run.out, parts, config, run.is_main) if config.resume else ([], 0)
    # Small sets: every image on the device once. Streamed folders: batches read from the cache on disk.
    images = splits.train.images if splits.train.streamed else splits.train.images.to(run.device)  # (N, C, H, W)
    labels = splits.train.labels.to(run.device)  # (N,)
    if run.is_main:
        announce(config, parts.model, splits, run)
    last_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, stop_after_epochs)
    for epoch in range(start_epoch, last_epoch):
        started = time.perf_counter()
        record, step_count = run_epoch(epoch, config, parts, step_module, splits, images, labels, run, history)
        if run.is_main and config.eval_every and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
            record.update(short_metrics(evaluate(parts.model, splits, config, run.precision, final=False)))
        history.append(record)
        if run.is_main:
            report_epoch(record, epoch, start_epoch, last_epoch, started)
            checkpoint.save(run.out, parts, config, history, steps_done=(epoch + 1) * step_count)
        run.barrier()  # the others wait while the main process evaluates and saves
    return finish(parts.model, splits, config, run, history, final_evaluation)


def run_epoch(
    epoch: int,
    config: TrainConfig,
    parts: steps.TrainingParts,
    step_module: torch.nn.Module,
    splits: Splits,
    images: torch.Tensor,
    labels: torch.Tensor,
    run: Run,
    history: list[dict],
) -> tuple[dict, int]:
    """One pass over the training set; the epoch's record (loss, training time so far) and its step count."""
    parts.model.train()
    parts.loss_function.train()
    generator = epoch_generator(config.seed, epoch)  # the same global batches on every rank
    augment_generator = steps.augmentation_generator(config.seed, epoch, run.topology.rank, run.device, generator)
    # Dropout draws from the global generator: reseeding per epoch makes a resumed epoch identical.
    torch.manual_seed(config.seed * 1_000_003 + epoch + 104_729 * run.topology.rank)
    # Index batches from the label array on the host (prepared once per epoch), then on the device.
    global_batches = epoch_batches(config, splits.train.labels, generator)
    host_batches = [distributed.shard(batch, run.topology) for batch in global_batches]
    batches = steps.epoch_batches_on_device(host_batches, run.device)
    pixels = (
        steps.read_ahead(images, host_batches, run.device) if splits.train.streamed else (images[i] for i in batches)
    )
    show_progress = config.progress and run.is_main
    progress = tqdm(batches, desc=f"Epoch {epoch + 1}/{config.epochs}", disable=not show_progress, leave=False)
    running_loss = torch.zeros((), device=run.device)  # summed on the device: no host sync per step
    seen = 0
    started = time.perf_counter()
    for batch_index, batch_pixels in zip(progress, pixels, strict=True):
        batch = steps.prepare_batch(batch_pixels, config, augment_generator, splits.preprocessing)
        loss = steps.train_step(
            step_module, parts.optimizer, parts.scaler, parts.schedule, batch, labels[batch_index], run.device,
            run.precision,
        )  # fmt: skip
        running_loss += loss.detach()
        seen += 1
        if show_progress and seen % LOG_EVERY_STEPS == 0:
            progress.set_postfix(loss=f"{float(running_loss) / seen:.4f}")
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = (history[-1]["train_seconds"] if history else 0.0) + time.perf_counter() - started
    record = {"epoch": epoch + 1, "loss": float(running_loss) / max(seen, 1), "train_seconds": round(train_seconds, 3)}
    return record, len(batches)


def finish(
    model: EmbeddingNet, splits: Splits, config: TrainConfig, run: Run, history: list[dict], final_evaluation: bool
) -> TrainResult:
    """Thresholds first, from validation alone; the test set then only measures them (main process, full runs)."""
    model.eval()
    # --epochs 0 (a pretrained network as it is) has no history but is finished: it is calibrated and tested too.
    finished = history[-1]["epoch"] == config.epochs if history else config.epochs == 0
    metrics = {}
    if finished and final_evaluation and run.is_main:
        model.calibration = calibrate_on_validation(model, splits, config, run.precision)
        metrics = evaluate(model, splits, config, run.precision, final=True)
    return TrainResult(
        model=model.cpu(),
        metrics=metrics,
        history=history,
        out=run.out,
        device=str(run.device),
        precision=run.precision,
        is_main=run.is_main,
    )
