"""Saved models in the Hub's format: load (local folder or Hub repo), save atomically, push.

A model is a folder holding `config.json`, `model.safetensors`, `README.md` (the model card)
and `metrics.json`. Weights are only ever read from safetensors: pickle files can run code when
loaded, so a folder or repository that has nothing else is refused.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import uuid
from pathlib import Path

from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from siamese.model_config import ConfigError, ModelConfig
from siamese.models import EmbeddingNet

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
METRICS_FILE = "metrics.json"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, METRICS_FILE)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Hidden and temporary files, and pickles (a training checkpoint), never go to the Hub.
UPLOAD_IGNORED = [".*", "*.tmp", *(f"*{suffix}" for suffix in PICKLE_SUFFIXES)]


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


class PushError(RuntimeError):
    """An upload to the Hub failed; the message says the local folder is intact and how to retry."""


# ---------------------------------------------------------------------------------------------
# Loading


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
    name = str(name_or_path)
    if os.path.isdir(name):
        if revision:
            raise ValueError(f"revision={revision!r} applies to Hub repos only; {name!r} is a local folder")
        return _load_folder(Path(name), device)
    config_path = _download(name, CONFIG_FILE, revision, bool(local_files_only), revision)
    # Both files come from the commit that config.json resolved to, so a push in between
    # cannot pair one commit's config with another's weights.
    snapshot = Path(config_path).parent
    _download(name, WEIGHTS_FILE, snapshot.name, bool(local_files_only), revision)
    return _load_folder(snapshot, device, source=_describe(name, revision))


def read_metrics(name_or_path: str | os.PathLike, revision: str | None = None) -> dict | None:
    """The model's `metrics.json` as a dict, or None when it has none (or it cannot be fetched offline)."""
    name = str(name_or_path)
    if os.path.isdir(name):
        source = f"model folder {name!r}"
        path = Path(name) / METRICS_FILE
        if not path.is_file():
            return None
    else:
        source = _describe(name, revision)
        try:
            path = Path(_download(name, METRICS_FILE, revision, False, revision))
        except _MissingFile:
            return None
        except ModelLoadError as error:
            if isinstance(error.__cause__, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
                return None
            raise
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{METRICS_FILE} of {source} is not valid JSON: {error}") from error
    if not isinstance(metrics, dict):
        raise ModelLoadError(f"{METRICS_FILE} of {source} must hold a JSON object")
    return metrics


def _describe(name: str, revision: str | None) -> str:
    return f"Hub repo {name!r}" + (f" at revision {revision!r}" if revision else "")


def _load_folder(folder: Path, device: str, source: str | None = None) -> EmbeddingNet:
    source = source or f"model folder {str(folder)!r}"
    weights_path = folder / WEIGHTS_FILE
    config_path = folder / CONFIG_FILE
    if not weights_path.is_file():
        pickles = sorted(path.name for path in folder.iterdir() if path.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ModelLoadError(
                f"{source} has only pickle weights ({', '.join(pickles)}) and no {WEIGHTS_FILE}. Pickle files can "
                f"run arbitrary code when loaded, so they are never loaded here: convert the weights to safetensors "
                f"(siamese.hub.save_model writes the right format)."
            )
        raise ModelLoadError(f"{source} has no {WEIGHTS_FILE}: the weights are missing")
    if not config_path.is_file():
        raise ModelLoadError(f"{source} has no {CONFIG_FILE}: the architecture of the weights is unknown")

    config = _read_config(config_path, source)
    try:
        model_config = ModelConfig.from_dict(config, where=f"{CONFIG_FILE} of {source}")
    except ConfigError as error:
        raise ModelLoadError(str(error)) from error
    try:
        reference = EmbeddingNet.from_config(model_config)
    except Exception as error:  # any constructor failure means the config describes no valid network
        raise ModelLoadError(f"invalid {CONFIG_FILE} in {source}: {type(error).__name__}: {error}") from error
    _check_weights_match(weights_path, reference, source)

    from safetensors.torch import load_model as load_safetensors

    try:
        # Strict: every tensor of the network must be in the file, and nothing else.
        load_safetensors(reference, str(weights_path), strict=True, device=str(device))
    except Exception as error:
        raise ModelLoadError(f"could not load the weights of {source}: {error}") from error
    return reference.to(device).eval()


def _read_config(config_path: Path, source: str) -> dict:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"invalid {CONFIG_FILE} in {source}: not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise ModelLoadError(f"invalid {CONFIG_FILE} in {source}: expected a JSON object, got {type(config).__name__}")
    if "architecture" not in config:
        raise ModelLoadError(
            f"invalid {CONFIG_FILE} in {source}: no 'architecture' key, so it was not written by "
            f"EmbeddingNet.save_pretrained (keys: {sorted(config)})"
        )
    return config


def _check_weights_match(weights_path: Path, model: EmbeddingNet, source: str) -> None:
    """Compare the safetensors header with the network the config builds; raise on any difference."""
    from safetensors import SafetensorError, safe_open

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


class _MissingFile(ModelLoadError):
    """The repository and revision exist but the file does not."""


def _download(
    repo_id: str, filename: str, revision: str | None, local_files_only: bool, shown_revision: str | None
) -> str:
    """hf_hub_download with every failure turned into one clear ModelLoadError.

    `shown_revision` is the revision the caller asked for, which messages name.
    """
    source = _describe(repo_id, shown_revision)
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
        raise _MissingFile(_missing_file_message(repo_id, filename, shown_revision)) from error
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
    return _MissingFile(_missing_file_message(repo_id, filename, shown_revision, files))


def _revision_message(repo_id: str, revision: str | None, names: list[str] | None = None) -> str:
    known = f" Its branches and tags: {', '.join(names)}." if names else ""
    return (
        f"revision {revision!r} not found in Hub repo {repo_id!r}: give an existing branch, tag or commit sha.{known}"
    )


def _missing_file_message(repo_id: str, filename: str, revision: str | None, files: list[str] | None = None) -> str:
    present = f" It holds: {', '.join(sorted(files))}." if files is not None else ""
    hint = f" Pickle weights are never loaded; the repo must hold {WEIGHTS_FILE}." if filename == WEIGHTS_FILE else ""
    return f"{_describe(repo_id, revision)} has no {filename}.{present}{hint}"


# ---------------------------------------------------------------------------------------------
# Saving


def save_model(model: EmbeddingNet, folder: str | os.PathLike, metrics: dict, command: str) -> Path:
    """Write config.json, model.safetensors, metrics.json and README.md into `folder` atomically.

    Everything is written into a temporary sibling folder, which then takes the place of
    `folder`; an existing folder is replaced only once the new one is complete, and a failure
    leaves it as it was.
    """
    from siamese.model_card import render_model_card

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


# ---------------------------------------------------------------------------------------------
# Pushing


def retry_command(folder: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """The command that uploads an already saved model folder again."""
    command = f"python train.py --push-only {shlex.quote(str(folder))} --push-to-hub {shlex.quote(repo_id)}"
    return command + (" --private" if private else "")


def push_model(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
) -> str:
    """Upload a saved model folder to the Hub repo `repo_id` in one commit; returns the commit url.

    The folder is validated first (all four files present, the weights load strictly). Any
    failure raises `PushError`; the local folder is never modified.
    """
    folder = Path(folder)
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise PushError(
            f"Nothing was uploaded: {folder} is not a complete model folder (missing {', '.join(missing)}). "
            f"Save it with siamese.hub.save_model first."
        )
    try:
        load_model(folder)
        metrics = read_metrics(folder) or {}
    except ModelLoadError as error:
        raise PushError(f"Nothing was uploaded: the model in {folder} does not load: {error}") from error
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    message = commit_message or describe_commit(config, metrics)

    api = api if api is not None else HfApi(token=token)
    stage = "creating the repository"
    try:
        repo_url = api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        stage = "uploading the folder"
        commit = api.upload_folder(
            repo_id=getattr(repo_url, "repo_id", None) or repo_id,
            folder_path=folder,
            commit_message=message,
            token=token,
            repo_type="model",
            ignore_patterns=UPLOAD_IGNORED,
        )
    except Exception as error:  # every failure gets the same intact-folder message and retry command
        raise PushError(
            f"Upload of {folder} to the Hub repo {repo_id!r} failed while {stage}: "
            f"{_push_failure_reason(error, repo_id)}\n"
            f"The local model folder {folder} is complete and intact; nothing in it was changed.\n"
            f"To retry the upload: {retry_command(folder, repo_id, private)}"
        ) from error
    return str(getattr(commit, "commit_url", None) or commit)


def describe_commit(config: dict, metrics: dict) -> str:
    """A one-line commit message naming what was trained, on what, for how long."""
    dataset = (metrics.get("dataset") or {}).get("name") or (config.get("training") or {}).get("data") or "images"
    architecture = config.get("architecture", "siamese")
    message = f"Upload {architecture} embedding model ({config.get('embedding_dim')}-d) trained on {dataset}"
    epochs = (metrics.get("training") or {}).get("epochs")
    return message + (f" for {epochs} epochs" if epochs is not None else "")


def _push_failure_reason(error: Exception, repo_id: str) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, LocalTokenNotFoundError) or (status == 401 and not isinstance(error, RepositoryNotFoundError)):
        return "no valid Hugging Face token: log in with `hf auth login` or set HF_TOKEN to a token with write access."
    if status == 403:
        return f"the token has no write access to {repo_id!r} (403 Forbidden): use a token that can write to it."
    if isinstance(error, RepositoryNotFoundError):
        return f"the repository {repo_id!r} was not found or is not accessible with this token ({error})."
    if _is_network_error(error):
        return f"the Hub ({constants.ENDPOINT}) could not be reached: no network? ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}"


def _is_network_error(error: Exception) -> bool:
    if isinstance(error, HfHubHTTPError):
        return False
    if isinstance(error, (ConnectionError, TimeoutError, OSError)):  # requests' errors are OSErrors
        return True
    # httpx-style transport errors are not OSErrors; recognise them by class name.
    return any(cls.__name__ in {"TransportError", "TimeoutException"} for cls in type(error).__mro__)
