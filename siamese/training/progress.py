"""What a training run prints: the start, one line per epoch, and the time left after the first."""

from __future__ import annotations

import time

from siamese.data.datasets import Splits
from siamese.modeling.network import EmbeddingNet
from siamese.training.config import TrainConfig
from siamese.training.run import Run

SHORT_METRICS = ("knn_accuracy", "precision_at_1", "map_at_r", "roc_auc", "eer", "one_shot_accuracy")


def announce(config: TrainConfig, model: EmbeddingNet, splits: Splits, run: Run) -> None:
    processes = f", {run.topology.world_size} processes" if run.topology.distributed else ""
    print(
        f"Training {config.architecture} ({sum(p.numel() for p in model.parameters()):,} parameters) on "
        f"{splits.description.get('name')}: {len(splits.train)} train / {len(splits.test)} test images, "
        f"device {run.device}, precision {run.precision}{processes}"
    )


def report_epoch(record: dict, epoch: int, start_epoch: int, last_epoch: int, started: float) -> None:
    """The epoch's line; after the first epoch of a run, an estimate of the time left."""
    print(format_record(record))
    if epoch == start_epoch and last_epoch - start_epoch > 1:
        remaining = (last_epoch - epoch - 1) * (time.perf_counter() - started)
        print(
            f"epoch {epoch + 1} took {duration(time.perf_counter() - started)}; about "
            f"{duration(remaining)} more for the remaining {last_epoch - epoch - 1} epochs (evaluation "
            f"included)"
        )


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else (f"{minutes} min {seconds} s" if minutes else f"{seconds} s")


def short_metrics(metrics: dict) -> dict:
    return {key: round(float(metrics[key]), 5) for key in SHORT_METRICS if key in metrics}


def format_record(record: dict) -> str:
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
