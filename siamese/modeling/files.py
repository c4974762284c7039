"""A saved model's files: their names, where they come from (a folder or a Hub repo), and strict checks.

A model is a folder holding `config.json`, `model.safetensors`, `README.md` (the model card)
and `metrics.json`. Weights are only ever read from safetensors: pickle files can run code when
loaded, so a folder or repository that has nothing else is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model as load_safetensors
from torch import nn

from siamese.modeling.config import ConfigError, ModelConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
METRICS_FILE = "metrics.json"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, METRICS_FILE)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


def describe_source(name: str, revision: str | None) -> str:
    return f"Hub repo {name!r}" + (f" at revision {revision!r}" if revision else "")


def model_folder(
    name_or_path: str | os.PathLike, revision: str | None = None, local_files_only: bool | None = None
) -> tuple[Path, str]:
    """The local folder holding a model's config and weights (downloaded for a Hub repo id), and how to name it.

    `revision` (a branch, tag or commit sha) applies to Hub repos only. Offline (`HF_HUB_OFFLINE=1`, or
    `local_files_only=True`; None follows the environment) a repo comes from the local cache.
    """
    name = str(name_or_path)
    if os.path.isdir(name):
        if revision:
            raise ValueError(f"revision={revision!r} applies to Hub repos only; {name!r} is a local folder")
        return Path(name), f"model folder {str(Path(name))!r}"
    config_path = download_file(name, CONFIG_FILE, revision, bool(local_files_only), revision)
    # Both files come from the commit that config.json resolved to, so a push in between
    # cannot pair one commit's config with another's weights.
    snapshot = Path(config_path).parent
    download_file(name, WEIGHTS_FILE, snapshot.name, bool(local_files_only), revision)
    return snapshot, describe_source(name, revision)


def read_model_config(folder: Path, source: str) -> ModelConfig:
    """The folder's typed config, after checking that safetensors weights sit beside it."""
    weights_path = folder / WEIGHTS_FILE
    config_path = folder / CONFIG_FILE
    if not weights_path.is_file():
        pickles = sorted(path.name for path in folder.iterdir() if path.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ModelLoadError(
                f"{source} has only pickle weights ({', '.join(pickles)}) and no {WEIGHTS_FILE}. Pickle files can "
                f"run arbitrary code when loaded, so they are never loaded here: convert the weights to safetensors "
                f"(siamese.save_model writes the right format)."
            )
        raise ModelLoadError(f"{source} has no {WEIGHTS_FILE}: the weights are missing")
    if not config_path.is_file():
        raise ModelLoadError(f"{source} has no {CONFIG_FILE}: the architecture of the weights is unknown")
    config = _read_config_json(config_path, source)
    try:
        return ModelConfig.from_dict(config, where=f"{CONFIG_FILE} of {source}")
    except ConfigError as error:
        raise ModelLoadError(str(error)) from error


def load_weights(model: nn.Module, folder: Path, source: str, device: str | torch.device) -> None:
    """Fill `model` from the folder's safetensors, strictly: every tensor present, with its shape, and nothing else."""
    weights_path = folder / WEIGHTS_FILE
    _check_weights_match(weights_path, model, source)
    try:
        load_safetensors(model, str(weights_path), strict=True, device=str(device))
    except Exception as error:
        raise ModelLoadError(f"could not load the weights of {source}: {error}") from error


def read_json_object(path: Path, not_json: str, not_an_object: str) -> dict:
    """The JSON object in `path`; otherwise a ModelLoadError with `not_json` ({error} filled in) or `not_an_object`
    ({kind} filled in)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(not_json.replace("{error}", str(error))) from error
    if not isinstance(value, dict):
        raise ModelLoadError(not_an_object.replace("{kind}", type(value).__name__))
    return value


def _read_config_json(config_path: Path, source: str) -> dict:
    config = read_json_object(
        config_path,
        f"invalid {CONFIG_FILE} in {source}: not valid JSON ({{error}})",
        f"invalid {CONFIG_FILE} in {source}: expected a JSON object, got {{kind}}",
    )
    if "architecture" not in config:
        raise ModelLoadError(
            f"invalid {CONFIG_FILE} in {source}: no 'architecture' key, so it was not written by "
            f"EmbeddingNet.save_pretrained (keys: {sorted(config)})"
        )
    return config


def _check_weights_match(weights_path: Path, model: nn.Module, source: str) -> None:
    """Compare the safetensors header with the network the config builds; raise on any difference."""
    try:
        with safe_open(str(weights_path), framework="pt") as weights:
            stored = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise ModelLoadError(
            f"{WEIGHTS_FILE} of {source} is corrupted or truncated ({weights_path.stat().st_size} bytes): {error}. "
            f"Download or save it again."
        ) from error
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    missing = sorted(expected.keys() - stored.keys())
    unexpected = sorted(stored.keys() - expected.keys())
    reshaped = [
        f"{key}: weights {stored[key]}, config {expected[key]}"
        for key in sorted(expected.keys() & stored.keys())
        if stored[key] != expected[key]
    ]
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"missing from the weights: {_listing(missing, ', ')}")
        if unexpected:
            problems.append(f"unexpected in the weights: {_listing(unexpected, ', ')}")
        if reshaped:
            problems.append(f"shapes differ: {_listing(reshaped, '; ')}")
        raise ModelLoadError(
            f"{CONFIG_FILE} of {source} does not match its {WEIGHTS_FILE} (architecture "
            f"{model.architecture!r}, embedding_dim {model.embedding_dim}): " + " | ".join(problems)
        )


def _listing(items: list[str], separator: str, shown: int = 8) -> str:
    more = f"{separator}and {len(items) - shown} more" if len(items) > shown else ""
    return separator.join(items[:shown]) + more


class MissingFileError(ModelLoadError):
    """The repository and revision exist but the file does not."""


def download_file(
    repo_id: str, filename: str, revision: str | None, local_files_only: bool, shown_revision: str | None
) -> str:
    """hf_hub_download with every failure turned into one clear ModelLoadError.

    `shown_revision` is the revision the caller asked for, which messages name.
    """
    source = describe_source(repo_id, shown_revision)
    try:
        return hf_hub_download(repo_id, filename, revision=revision, local_files_only=local_files_only)
    except HFValidationError as error:
        raise ModelLoadError(
            f"{repo_id!r} is neither an existing local folder nor a valid Hub repo id ('user/name'): {error}"
        ) from error
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        if local_files_only or constants.is_offline_mode():
            reason = "offline mode is on (HF_HUB_OFFLINE=1 or local_files_only=True)"
        else:
            reason = f"the Hub ({constants.ENDPOINT}) could not be reached"
        raise ModelLoadError(
            f"cannot load {filename} of {source}: {reason} and it is not in the local cache "
            f"({constants.HF_HUB_CACHE}). Connect to the network once to download it, or load a local model folder."
        ) from error
    except RevisionNotFoundError as error:
        raise ModelLoadError(_revision_message(repo_id, shown_revision)) from error
    except GatedRepoError as error:
        raise ModelLoadError(
            f"Hub repo {repo_id!r} is gated: accept its conditions on its page, then log in with `hf auth login`"
        ) from error
    except RepositoryNotFoundError as error:
        # Some Hub-compatible servers answer "repository not found" for a missing file or revision
        # too, so ask which of the three it is.
        raise _diagnose_not_found(repo_id, filename, revision, shown_revision) from error
    except EntryNotFoundError as error:
        raise MissingFileError(_missing_file_message(repo_id, filename, shown_revision)) from error
    except HfHubHTTPError as error:
        raise ModelLoadError(f"the Hub refused {filename} of {source}: {error}") from error


def _diagnose_not_found(
    repo_id: str, filename: str, revision: str | None, shown_revision: str | None
) -> ModelLoadError:
    api = HfApi()
    try:
        refs = api.list_repo_refs(repo_id)
    except Exception:  # whatever the probe fails with, the repository is not reachable to us
        return ModelLoadError(
            f"Hub repo {repo_id!r} not found on {constants.ENDPOINT}. Check the spelling ('user/name'); if it is "
            f"private, log in with `hf auth login` or pass a token that can read it."
        )
    try:
        files = [sibling.rfilename for sibling in api.model_info(repo_id, revision=revision or "main").siblings or []]
    except Exception:  # the repository exists, so the revision is what is missing
        names = [ref.name for ref in [*refs.branches, *refs.tags]]
        return ModelLoadError(_revision_message(repo_id, shown_revision, names))
    return MissingFileError(_missing_file_message(repo_id, filename, shown_revision, files))


def _revision_message(repo_id: str, revision: str | None, names: list[str] | None = None) -> str:
    known = f" Its branches and tags: {', '.join(names)}." if names else ""
    return (
        f"revision {revision!r} not found in Hub repo {repo_id!r}: give an existing branch, tag or commit sha.{known}"
    )


def _missing_file_message(repo_id: str, filename: str, revision: str | None, files: list[str] | None = None) -> str:
    present = f" It holds: {', '.join(sorted(files))}." if files is not None else ""
    hint = f" Pickle weights are never loaded; the repo must hold {WEIGHTS_FILE}." if filename == WEIGHTS_FILE else ""
    return f"{describe_source(repo_id, revision)} has no {filename}.{present}{hint}"
