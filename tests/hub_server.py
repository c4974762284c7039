"""A real Hub-compatible server for the download tests: olah serving local git repositories offline.

olah (a self-hosted Hugging Face mirror) answers `hf_hub_download` / `snapshot_download` for every
repository it finds as a git checkout under `<mirrors>/models/<org>/<name>`; with
`[accessibility] offline = true` it never calls huggingface.co. `huggingface_hub` reads
`HF_ENDPOINT` once, when it is imported, so the code under test runs in a subprocess
(`run_python`) whose environment points it at the server and at a private cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
}


def olah_missing_reason() -> str | None:
    """Why the server cannot run here, or None when it can."""
    if importlib.util.find_spec("olah") is None:
        return "olah is not installed (pip install -r requirements-dev.txt)"
    if shutil.which("git") is None:
        return "git is not installed; olah serves repositories from git checkouts"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def git(folder: Path, *arguments: str) -> str:
    result = subprocess.run(
        ["git", *arguments],
        cwd=folder,
        env={**os.environ, **GIT_IDENTITY},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def mirror_repository(mirrors: Path, repo_id: str) -> Path:
    """The git checkout olah serves as the model repository `repo_id` ("org/name")."""
    organisation, name = repo_id.split("/")
    return mirrors / "models" / organisation / name


def commit_files(mirrors: Path, repo_id: str, files: dict[str, bytes], message: str, tag: str | None = None) -> str:
    """Replace the repository's files with `files` in one commit on main; returns the commit sha.

    olah takes a non-UTF-8 file of 121 to 149 bytes for a Git LFS pointer and fails on it,
    so test files must stay out of that size range.
    """
    folder = mirror_repository(mirrors, repo_id)
    if not (folder / ".git").is_dir():
        folder.mkdir(parents=True)
        git(folder, "init", "--quiet", "--initial-branch=main")
    for existing in folder.iterdir():
        if existing.name != ".git":
            shutil.rmtree(existing) if existing.is_dir() else existing.unlink()
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    git(folder, "add", "--all")
    git(folder, "commit", "--quiet", "--allow-empty", "-m", message)
    if tag is not None:
        git(folder, "tag", tag)
    return git(folder, "rev-parse", "HEAD")


def folder_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(Path(folder).iterdir()) if path.is_file()}


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"olah exited with status {process.returncode} before answering on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"olah did not answer on 127.0.0.1:{port} within {timeout:.0f} s")


@contextmanager
def olah_server(workdir: Path):
    """Start olah offline on a free port over `workdir/mirrors`; yields (endpoint, mirrors).

    Repositories may be added to the mirrors folder while the server runs. The server is
    always terminated on exit.
    """
    workdir = Path(workdir)
    mirrors = workdir / "mirrors"
    mirrors.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "olah.toml"
    config.write_text(
        "[basic]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f"repos-path = {json.dumps(str(workdir / 'repos'))}\n"
        f"mirrors-path = [{json.dumps(str(mirrors))}]\n"
        # Every test commits new revisions; cached metadata would hide them.
        "metadata-cache-ttl = 0\n"
        "\n[accessibility]\noffline = true\n"
    )
    log = (workdir / "olah.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "olah.server", "--config", str(config), "--log-path", str(workdir / "logs")],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}", mirrors
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def hub_environment(endpoint: str, hf_home: Path, offline: bool = False) -> dict[str, str]:
    """The environment of a process that talks to `endpoint` with its own cache and no token."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING_FACE_"))}
    environment.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_OFFLINE="1" if offline else "0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPOSITORY_ROOT), os.environ.get("PYTHONPATH")])),
    )
    return environment


def run_probe(
    requests: list[dict], environment: dict[str, str], skip_retry_waits: bool = False, timeout: float = 120.0
) -> list[dict]:
    """Run `requests` through siamese.modeling.pretrained in a fresh interpreter (see `probe`); returns one result each.

    `skip_retry_waits` makes the subprocess's time.sleep return at once: huggingface_hub retries a
    refused connection five times with back-off (about 25 s), which says nothing about our code.
    """
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import hub_server; "
        f"hub_server.probe(skip_retry_waits={skip_retry_waits})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(requests),
        env=environment,
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"probe failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def probe_images(channels: int = 1, height: int = 28, width: int = 28):
    """The fixed batch (2, C, H, W) whose embeddings the probe reports (digits' shape unless a model says)."""
    import torch

    return torch.rand(2, channels, height, width, generator=torch.Generator().manual_seed(0))


def probe(skip_retry_waits: bool = False) -> None:
    """Subprocess side of `run_probe`: read requests as JSON from stdin, print results as JSON.

    A request is {"op": "load" | "metrics", "name": ..., "revision": ...}; a result is
    {"embeddings": [[...]]} or {"metrics": {...}} or {"error": class name, "message": text}.
    """
    import torch

    from siamese.modeling.pretrained import load_model, read_metrics

    if skip_retry_waits:
        time.sleep = lambda seconds: None
    results = []
    for request in json.loads(sys.stdin.read()):
        try:
            if request["op"] == "load":
                model = load_model(request["name"], revision=request.get("revision"))
                with torch.inference_mode():
                    images = probe_images(model.in_channels, *model.image_size)
                    results.append({"embeddings": model(images).tolist(), "training": model.training})
            else:
                results.append({"metrics": read_metrics(request["name"], revision=request.get("revision"))})
        except Exception as error:  # reported to the test, which asserts on it
            results.append({"error": type(error).__name__, "message": str(error)})
    print(json.dumps(results))
