"""Training checkpoints: written atomically after every epoch, read back for an exact resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from siamese.training.config import TrainConfig
from siamese.training.steps import TrainingParts

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


def save(out: Path, parts: TrainingParts, config: TrainConfig, history: list[dict], steps_done: int) -> None:
    """Everything an exact resume needs, after the epoch `history` ends with."""
    state = {
        "model": parts.model.state_dict(),
        "loss": parts.loss_function.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "schedule": parts.schedule.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "config": config.to_dict(),
        "epoch": history[-1]["epoch"],
        "step": steps_done,
        "history": json.dumps(history),
    }
    atomic_torch_save(state, out / CHECKPOINT_NAME)


def resume(out: Path, parts: TrainingParts, config: TrainConfig, announce: bool) -> tuple[list[dict], int]:
    """The history and the epoch to start from: ([], 0) when there is no checkpoint in `out`."""
    path = out / CHECKPOINT_NAME
    if not path.exists():
        return [], 0
    state = load_checkpoint(path, config)
    parts.model.load_state_dict(state["model"])
    parts.loss_function.load_state_dict(state["loss"])
    parts.optimizer.load_state_dict(state["optimizer"])
    if "scaler" in state:
        parts.scaler.load_state_dict(state["scaler"])
    parts.schedule.load_state_dict(state["schedule"])
    start_epoch = int(state["epoch"])
    if announce:
        print(f"Resuming from {path} after epoch {start_epoch} (step {state['step']})")
    return json.loads(state["history"]), start_epoch
