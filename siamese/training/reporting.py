"""After training: write the model folder, the history and its plot."""

from __future__ import annotations

import json
import os
from pathlib import Path

from siamese.modeling.pretrained import save_model
from siamese.training.checkpoint import CHECKPOINT_NAME
from siamese.training.config import TrainConfig
from siamese.training.datasets import DATASETS
from siamese.training.loop import TrainResult


def run_metrics(result: TrainResult, config: TrainConfig, description: dict, command: str, device: str) -> dict:
    """The content of metrics.json: what was trained on, the test figures, and how long it took."""
    test = {key: value for key, value in result.metrics.items() if key != "distance_histogram"}
    calibration = {key: value for key, value in result.model.calibration.items() if key != "distance_histogram"}
    return {
        "task": DATASETS.get(config.dataset).task,
        "dataset": description,
        "test": test,
        "distance_histogram": result.metrics.get("distance_histogram"),
        "calibration": calibration or None,
        "training": {
            "epochs": config.epochs,
            "seconds": result.history[-1]["train_seconds"] if result.history else 0.0,
            "device": device,
            "precision": result.precision,
            "command": command,
            "config": config.to_dict(),
        },
        "history": result.history,
        # Weights made elsewhere (dlib's face descriptor): credited and described on the card.
        "origin": result.model.training_info.get("origin"),
    }


def save_run(result: TrainResult, config: TrainConfig, description: dict, command: str, device: str) -> Path:
    """Write the complete model folder to `config.out`; the checkpoint goes once the folder is in place."""
    result.model.training_info = {**result.model.training_info, "command": command}
    metrics = run_metrics(result, config, description, command, device)
    out = Path(config.out)
    save_model(result.model, out, metrics=metrics, command=command)
    write_history(result.history, out)
    checkpoint = out / CHECKPOINT_NAME
    if checkpoint.exists():
        checkpoint.unlink()
    return out


def write_history(history: list[dict], folder: Path) -> None:
    """history.json (the data) and history.png (loss and test accuracy per epoch)."""
    temporary = folder / "history.json.tmp"
    temporary.write_text(json.dumps(history, indent=2))
    os.replace(temporary, folder / "history.json")
    if not history:
        return
    # Start-up time: matplotlib loads only when a history is plotted.
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import pyplot  # after matplotlib.use: the backend is chosen before pyplot loads

    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, metric_axis) = pyplot.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [record["loss"] for record in history], marker="o")
    loss_axis.set(xlabel="epoch", ylabel="training loss", title="Loss")
    for key, label in (
        ("knn_accuracy", "kNN accuracy"),
        ("one_shot_accuracy", "one-shot accuracy"),
        ("roc_auc", "ROC AUC"),
    ):
        points = [(record["epoch"], record[key]) for record in history if key in record]
        if points:
            metric_axis.plot(*zip(*points, strict=True), marker="o", label=label)
    metric_axis.set(xlabel="epoch", ylabel="validation set", title="Validation metrics")
    if metric_axis.lines:
        metric_axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "history.png.tmp.png", dpi=100)
    pyplot.close(figure)
    os.replace(folder / "history.png.tmp.png", folder / "history.png")
