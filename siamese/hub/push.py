"""Publishing a saved model folder to the Hugging Face Hub in one commit, with a clear message on any failure."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, RepositoryNotFoundError

from siamese.modeling.files import CONFIG_FILE, MODEL_FILES, PICKLE_SUFFIXES, ModelLoadError
from siamese.modeling.pretrained import load_model, read_metrics

# Hidden and temporary files, and pickles (a training checkpoint), never go to the Hub.
UPLOAD_IGNORED = [".*", "*.tmp", *(f"*{suffix}" for suffix in PICKLE_SUFFIXES)]


class PushError(RuntimeError):
    """An upload to the Hub failed; the message says the local folder is intact and how to retry."""


@dataclass(frozen=True)
class UploadFailure:
    """The words of a failed upload's message: where to, the first stage's name, the folder's state, the retry."""

    destination: str
    creating: str
    intact: str
    retry: str


def create_and_upload(
    api: HfApi, repo_id: str, folder: Path, create: dict, upload: dict, token: str | None, failure: UploadFailure
):
    """Create the repository if needed, then upload the folder in one commit; any failure is one PushError."""
    stage = failure.creating
    try:
        repo_url = api.create_repo(repo_id, token=token, exist_ok=True, **create)
        stage = "uploading the folder"
        return api.upload_folder(
            repo_id=getattr(repo_url, "repo_id", None) or repo_id, folder_path=folder, token=token, **upload
        )
    except Exception as error:  # every failure gets the same intact-folder message and retry command
        raise PushError(
            f"Upload of {folder} to {failure.destination} failed while {stage}: "
            f"{push_failure_reason(error, repo_id)}\n{failure.intact}\nTo retry the upload: {failure.retry}"
        ) from error


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
            f"Save it with siamese.save_model first."
        )
    try:
        load_model(folder)
        metrics = read_metrics(folder) or {}
    except ModelLoadError as error:
        raise PushError(f"Nothing was uploaded: the model in {folder} does not load: {error}") from error
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    message = commit_message or describe_commit(config, metrics)

    api = api if api is not None else HfApi(token=token)
    commit = create_and_upload(
        api,
        repo_id,
        folder,
        create={"private": private, "repo_type": "model"},
        upload={"commit_message": message, "repo_type": "model", "ignore_patterns": UPLOAD_IGNORED},
        token=token,
        failure=UploadFailure(
            destination=f"the Hub repo {repo_id!r}",
            creating="creating the repository",
            intact=f"The local model folder {folder} is complete and intact; nothing in it was changed.",
            retry=retry_command(folder, repo_id, private),
        ),
    )
    return str(getattr(commit, "commit_url", None) or commit)


def describe_commit(config: dict, metrics: dict) -> str:
    """A one-line commit message naming what was trained, on what, for how long."""
    dataset = (metrics.get("dataset") or {}).get("name") or (config.get("training") or {}).get("data") or "images"
    architecture = config.get("architecture", "siamese")
    message = f"Upload {architecture} embedding model ({config.get('embedding_dim')}-d) trained on {dataset}"
    epochs = (metrics.get("training") or {}).get("epochs")
    return message + (f" for {epochs} epochs" if epochs is not None else "")


def push_failure_reason(error: Exception, repo_id: str) -> str:
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
