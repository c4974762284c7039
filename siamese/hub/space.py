"""Publishing the demo app as a Hugging Face Space (Gradio SDK): checks, then one upload.

python -m siamese.space user/space-name            # the current folder, token from `hf auth login`
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from huggingface_hub import HfApi, RepoCard

from siamese.hub.push import PushError, UploadFailure, create_and_upload
from siamese.modeling.files import PICKLE_SUFFIXES

SPACE_FILES = ("app.py", "requirements.txt", "README.md")
# What never goes to a Space: version control and environments, training runs and data, caches of tests and
# tools, checkpoints and pickles (a Space loads safetensors only). upload_folder matches these with fnmatch on
# paths relative to the folder, where `*` also crosses `/`.
SPACE_IGNORED = [
    ".git/*",
    ".venv/*",
    ".whl/*",
    ".gl/*",
    ".gradio/*",
    "flagged/*",
    "runs/*",
    "data/*",
    "*__pycache__/*",
    "*.pyc",
    "*.pytest_cache/*",
    "*.ruff_cache/*",
    "*.egg-info/*",
    "*.tmp",
    "*checkpoint*",
    *(f"*{suffix}" for suffix in PICKLE_SUFFIXES),
]


def retry_command(folder: str | os.PathLike, repo_id: str) -> str:
    """The command that uploads the Space again."""
    return f"cd {shlex.quote(str(folder))} && python -m siamese.space {shlex.quote(repo_id)}"


def check_space_folder(folder: str | os.PathLike) -> None:
    """Raise PushError unless `folder` holds the app, its requirements and a README with Gradio Space metadata."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PushError(f"Nothing was uploaded: {folder} is not a folder.")
    missing = [name for name in SPACE_FILES if not (folder / name).is_file()]
    if missing:
        raise PushError(
            f"Nothing was uploaded: {folder} is not a Space folder (missing {', '.join(missing)}); "
            "give the repository root, which holds app.py."
        )
    try:
        metadata = RepoCard.load(folder / "README.md").data.to_dict()
    except Exception as error:  # any failure to read the front matter is the same problem to the user
        raise PushError(
            f"Nothing was uploaded: the front matter of {folder / 'README.md'} is unreadable: {error}"
        ) from error
    expected = {"sdk": "gradio", "app_file": "app.py"}
    wrong = {key: metadata.get(key) for key, value in expected.items() if metadata.get(key) != value}
    if wrong:
        raise PushError(
            f"Nothing was uploaded: README.md front matter must say {expected}, but has {wrong}. "
            "The Hub reads it to know how to run the Space."
        )


def push_space(folder: str | os.PathLike, repo_id: str, token: str | None = None, api: HfApi | None = None) -> str:
    """Create (or reuse) the Gradio Space `repo_id` and upload `folder` to it in one commit; returns the commit url.

    The folder is checked first; runs, data, caches, checkpoints and pickles are left out. Any failure raises
    `PushError` naming the stage and the reason; the local folder is never modified.
    """
    folder = Path(folder)
    check_space_folder(folder)
    api = api if api is not None else HfApi(token=token)
    commit = create_and_upload(
        api,
        repo_id,
        Path(folder),
        create={"repo_type": "space", "space_sdk": "gradio"},
        upload={
            "commit_message": "Upload the Siamese similarity demo app",
            "repo_type": "space",
            "ignore_patterns": list(SPACE_IGNORED),
        },
        token=token,
        failure=UploadFailure(
            destination=f"the Space {repo_id!r}",
            creating="creating the Space",
            intact=f"Nothing in {folder} was changed.",
            retry=retry_command(folder, repo_id),
        ),
    )
    return str(getattr(commit, "commit_url", None) or commit)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Upload the demo app as a Hugging Face Space (Gradio SDK)")
    parser.add_argument("repo_id", help="the Space, as user/name")
    parser.add_argument("--folder", default=".", help="the repository root (default: the current folder)")
    args = parser.parse_args(argv)
    print(push_space(args.folder, args.repo_id))


if __name__ == "__main__":
    main()
