"""Saved models: load one strictly (a local folder or a Hub repo), read its metrics, save one atomically."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

from siamese.modeling.card import render_model_card
from siamese.modeling.files import (
    CARD_FILE,
    METRICS_FILE,
    MissingFileError,
    ModelLoadError,
    describe_source,
    download_file,
    read_json_object,
)
from siamese.modeling.network import EmbeddingNet


def load_model(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    device: str = "cpu",
    local_files_only: bool | None = None,
) -> EmbeddingNet:
    """Load an `EmbeddingNet` from a local model folder or a Hub repo id, strictly, in eval mode.

    `revision` (a branch, tag or commit sha) applies to Hub repos only. Offline
    (`HF_HUB_OFFLINE=1`, or `local_files_only=True`; None follows the environment) a repo
    loads from the local cache.
    Raises `ModelLoadError` with one clear message per failure.
    """
    return EmbeddingNet.from_pretrained(
        name_or_path, revision=revision, device=device, local_files_only=local_files_only
    )


def read_metrics(name_or_path: str | os.PathLike, revision: str | None = None) -> dict | None:
    """The model's `metrics.json` as a dict, or None when it has none (or it cannot be fetched offline)."""
    name = str(name_or_path)
    if os.path.isdir(name):
        source = f"model folder {name!r}"
        path = Path(name) / METRICS_FILE
        if not path.is_file():
            return None
    else:
        source = describe_source(name, revision)
        try:
            path = Path(download_file(name, METRICS_FILE, revision, False, revision))
        except MissingFileError:
            return None
        except ModelLoadError as error:
            if isinstance(error.__cause__, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
                return None
            raise
    metrics = read_json_object(
        path,
        f"{METRICS_FILE} of {source} is not valid JSON: {{error}}",
        f"{METRICS_FILE} of {source} must hold a JSON object",
    )
    return metrics


def save_model(model: EmbeddingNet, folder: str | os.PathLike, metrics: dict, command: str) -> Path:
    """Write config.json, model.safetensors, metrics.json and README.md into `folder` atomically.

    Everything is written into a temporary sibling folder, which then takes the place of
    `folder`; an existing folder is replaced only once the new one is complete, and a failure
    leaves it as it was.
    """
    if not isinstance(model, EmbeddingNet):
        raise TypeError(f"model must be an EmbeddingNet, got {type(model).__name__}")
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staging = folder.parent / f".{folder.name}.saving-{token}"
    previous = folder.parent / f".{folder.name}.replaced-{token}"
    config = model.config_dict()
    try:
        staging.mkdir()
        # The card goes first: save_pretrained writes a generic card only when none exists.
        (staging / CARD_FILE).write_text(render_model_card(config, metrics, command), encoding="utf-8")
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        model.save_pretrained(staging, config=config)
        _sync_folder(staging)
        if folder.exists():
            os.replace(folder, previous)
            try:
                os.replace(staging, folder)
            except BaseException:
                os.replace(previous, folder)
                raise
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _sync_folder(folder: Path) -> None:
    """Flush every file to disk, so the renamed folder is complete even after a power cut."""
    for path in folder.iterdir():
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
