"""Ready to deploy as a Space: LFS rules cover the tracked binaries, README front matter, and push_space."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS, CommitInfo, RepoUrl
from huggingface_hub.utils import filter_repo_objects
from packaging.requirements import Requirement
from packaging.version import Version

import app
from siamese.hub.push import PushError
from siamese.hub.space import SPACE_IGNORED, push_space

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
LARGE_BYTES = 1024 * 1024
# Suffixes taken as binary even without a NUL byte near the start (compressed or encoded data).
BINARY_SUFFIXES = {".safetensors", ".png", ".pgm", ".onnx", ".pt2", ".pt", ".pth", ".bin", ".jpg", ".jpeg", ".webp"}


# ------------------------------------------------------------------------------------------
# Git LFS rules


def git(folder: Path, *arguments: str) -> str:
    result = subprocess.run(["git", *arguments], cwd=folder, capture_output=True, text=True, check=True)
    return result.stdout


def tracked_files(folder: Path) -> list[str]:
    """Paths `git ls-files` lists under `folder`; skips the test when git or a checkout is missing."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    try:
        git(folder, "rev-parse", "--is-inside-work-tree")
    except subprocess.CalledProcessError:
        pytest.skip(f"{folder} is not a git checkout")
    return [line for line in git(folder, "ls-files", "-z").split("\0") if line]


def is_binary(path: Path) -> bool:
    with path.open("rb") as file:
        return b"\0" in file.read(8192) or path.suffix.lower() in BINARY_SUFFIXES


def lfs_filtered(folder: Path, paths: list[str]) -> set[str]:
    """The paths whose `filter` attribute is `lfs`, as git itself resolves .gitattributes."""
    if not paths:
        return set()
    output = git(folder, "check-attr", "-z", "filter", "--", *paths).split("\0")
    # -z output is path, attribute, value, repeated.
    return {path for path, _, value in zip(output[0::3], output[1::3], output[2::3], strict=False) if value == "lfs"}


def uncovered_large_binaries(folder: Path) -> list[str]:
    """Tracked binaries over 1 MB that no LFS rule covers."""
    large = [
        path
        for path in tracked_files(folder)
        if (folder / path).is_file() and (folder / path).stat().st_size > LARGE_BYTES and is_binary(folder / path)
    ]
    covered = lfs_filtered(folder, large)
    return sorted(path for path in large if path not in covered)


def test_every_tracked_binary_over_1mb_is_in_lfs():
    assert uncovered_large_binaries(REPOSITORY_ROOT) == []


def test_the_lfs_check_finds_an_uncovered_binary(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git(tmp_path, "init", "--quiet")
    (tmp_path / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    (tmp_path / "weights.safetensors").write_bytes(b"\0" * (LARGE_BYTES + 1))  # large, covered
    (tmp_path / "faces.dat").write_bytes(b"P5\0" * LARGE_BYTES)  # large binary by content, not covered
    (tmp_path / "notes.txt").write_text("text\n" * LARGE_BYTES)  # large but text
    (tmp_path / "small.onnx").write_bytes(b"\0" * 100)  # binary but small
    git(tmp_path, "add", "--all")
    assert uncovered_large_binaries(tmp_path) == ["faces.dat"]


@pytest.mark.parametrize(
    "path", ["pretrained/mnist/model.safetensors", "docs/screenshot.png", "faces/s1/1.pgm", "model.onnx", "m.pt2"]
)
def test_gitattributes_sends_the_project_binaries_to_lfs(path):
    tracked_files(REPOSITORY_ROOT)  # skips outside a checkout
    assert lfs_filtered(REPOSITORY_ROOT, [path]) == {path}


def test_gitattributes_leaves_source_files_alone():
    tracked_files(REPOSITORY_ROOT)
    assert (
        lfs_filtered(REPOSITORY_ROOT, ["app.py", "README.md", "requirements.txt", "pretrained/mnist/config.json"])
        == set()
    )


# ------------------------------------------------------------------------------------------
# README front matter


def front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must open with a YAML front matter block"
    block = text[4:].split("\n---\n", 1)[0]
    return yaml.safe_load(block)


def gradio_requirement() -> Requirement:
    lines = (REPOSITORY_ROOT / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith(("#", "-"))]
    [gradio] = [requirement for requirement in requirements if requirement.name == "gradio"]
    return gradio


def test_readme_front_matter_describes_a_gradio_space():
    metadata = front_matter(REPOSITORY_ROOT / "README.md")
    assert metadata["sdk"] == "gradio"
    assert metadata["app_file"] == "app.py" and (REPOSITORY_ROOT / metadata["app_file"]).is_file()
    assert metadata["python_version"] == "3.11"  # a string: unquoted 3.10 would read as the number 3.1
    sdk_version = metadata["sdk_version"]
    assert isinstance(sdk_version, str) and Version(sdk_version)
    specifier = gradio_requirement().specifier
    assert Version(sdk_version) in specifier, f"sdk_version {sdk_version} is outside requirements.txt's {specifier}"


# ------------------------------------------------------------------------------------------
# push_space


class RecordingApi(HfApi):
    """A real HfApi whose two HTTP calls record instead. The upload records the files that upload_folder
    would send, chosen by huggingface_hub's own pattern filter with its default ignore patterns added."""

    def __init__(self, failure: Exception | None = None, fail_on: str = "create_repo"):
        super().__init__(token="hf_test")  # nothing is sent: both HTTP methods are replaced
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: set[str] = set()
        self.failure, self.fail_on = failure, fail_on

    def _record(self, name: str, arguments: dict) -> None:
        self.calls.append((name, arguments))
        if self.failure is not None and name == self.fail_on:
            raise self.failure

    def create_repo(self, repo_id, **arguments):
        self._record("create_repo", {"repo_id": repo_id, **arguments})
        return RepoUrl(f"{self.endpoint}/spaces/{repo_id}", endpoint=self.endpoint)

    def upload_folder(self, **arguments):
        self._record("upload_folder", arguments)
        folder = Path(arguments["folder_path"])
        paths = [path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()]
        patterns = list(arguments["ignore_patterns"]) + DEFAULT_IGNORE_PATTERNS
        self.uploaded = set(filter_repo_objects(paths, ignore_patterns=patterns))
        url = f"{self.endpoint}/spaces/{arguments['repo_id']}/commit/abc123"
        return CommitInfo(
            commit_url=url, commit_message=arguments["commit_message"], commit_description="", oid="abc123"
        )


SPACE_README = "---\ntitle: Demo\nsdk: gradio\nsdk_version: 6.0.0\napp_file: app.py\n---\n\n# Demo\n"
KEPT = [
    "app.py",
    "requirements.txt",
    "README.md",
    ".gitattributes",
    "siamese/__init__.py",
    "pretrained/mnist/model.safetensors",
    "pretrained/mnist/config.json",
    "tests/test_app.py",
]
LEFT_OUT = [
    ".git/HEAD",
    ".git/objects/ab/cdef",
    ".venv/lib/site.py",
    ".pytest_cache/v/cache/nodeids",
    ".ruff_cache/0.6/abc",
    "siamese/__pycache__/models.cpython-311.pyc",
    "tests/__pycache__/conftest.cpython-311.pyc",
    "runs/mnist/model.safetensors",
    "runs/mnist/checkpoint.pt",
    "data/mnist/raw.gz",
    "old_checkpoint.pt",
    "weights.pth",
    "model.pkl",
    "pretrained/mnist/pytorch_model.bin",
    ".gradio/flagged/log.csv",
]


@pytest.fixture
def space_folder(tmp_path) -> Path:
    folder = tmp_path / "space"
    for relative in KEPT + LEFT_OUT:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text("x")
    (folder / "README.md").write_text(SPACE_README)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_push_space_creates_a_gradio_space_and_uploads_the_app_only(space_folder):
    api = RecordingApi()
    url = push_space(space_folder, "someone/demo", api=api)
    assert url == "https://huggingface.co/spaces/someone/demo/commit/abc123"
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    create, upload = api.calls[0][1], api.calls[1][1]
    assert create["repo_id"] == "someone/demo" and create["repo_type"] == "space"
    assert create["space_sdk"] == "gradio" and create["exist_ok"] is True
    assert upload["repo_type"] == "space" and upload["folder_path"] == space_folder
    assert api.uploaded == set(KEPT)


def test_push_space_from_this_repository_sends_the_app_and_models_and_no_caches():
    api = RecordingApi()
    push_space(REPOSITORY_ROOT, "someone/demo", api=api)
    assert {"app.py", "README.md", "requirements.txt", "pretrained/mnist/model.safetensors"} <= api.uploaded
    for path in api.uploaded:
        parts = Path(path).parts
        assert parts[0] not in {".git", "runs", "data", ".venv"} and "__pycache__" not in parts, path
        assert not path.endswith((".pyc", ".pt", ".pth", ".pkl", ".ckpt")), path


def test_ignore_patterns_are_the_ones_published():
    api = RecordingApi()
    push_space(REPOSITORY_ROOT, "someone/demo", api=api)
    assert api.calls[1][1]["ignore_patterns"] == SPACE_IGNORED


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda folder: (folder / "app.py").unlink(), "missing app.py"),
        (lambda folder: (folder / "requirements.txt").unlink(), "missing requirements.txt"),
        (lambda folder: (folder / "README.md").write_text(SPACE_README.replace("gradio", "docker")), "'docker'"),
        (lambda folder: (folder / "README.md").write_text("# no front matter\n"), "front matter must say"),
    ],
)
def test_push_space_refuses_a_folder_that_is_not_a_space_before_any_request(space_folder, change, message):
    change(space_folder)
    api = RecordingApi()
    with pytest.raises(PushError, match="Nothing was uploaded") as caught:
        push_space(space_folder, "someone/demo", api=api)
    assert message in str(caught.value)
    assert api.calls == []


def test_push_space_refuses_a_missing_folder(tmp_path):
    with pytest.raises(PushError, match="is not a folder"):
        push_space(tmp_path / "nowhere", "someone/demo", api=RecordingApi())


@pytest.mark.parametrize(
    "failure, fail_on, reason",
    [
        (ConnectionError("Failed to resolve host"), "create_repo", "while creating the Space: the Hub"),
        (ValueError("upload broke"), "upload_folder", "while uploading the folder: ValueError: upload broke"),
    ],
)
def test_push_space_failure_names_the_stage_and_the_retry_command(space_folder, failure, fail_on, reason):
    before = snapshot(space_folder)
    with pytest.raises(PushError) as caught:
        push_space(space_folder, "someone/demo", api=RecordingApi(failure, fail_on))
    message = str(caught.value)
    assert reason in message
    assert f"To retry the upload: cd {space_folder} && python -m siamese.space someone/demo" in message
    assert caught.value.__cause__ is failure
    assert snapshot(space_folder) == before


# ------------------------------------------------------------------------------------------
# Server memory: malloc arenas

# A child process: optionally caps the arenas through app.limit_malloc_arenas, lets 8 threads each allocate while
# all are alive, then prints how many heaps (arenas) glibc's malloc_info reports.
ARENA_PROBE = """
import ctypes, sys, tempfile, threading
sys.path.insert(0, {root!r})
import app
capped = app.limit_malloc_arenas() if {cap} else False
barrier = threading.Barrier(8)
def allocate():
    blocks = [bytes(2000) for _ in range(200)]  # over pymalloc's 512-byte limit: these come from malloc
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(capped, open(report.name).read().count("<heap nr="))
"""


def arena_count(cap: bool) -> tuple[bool, int]:
    environment = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    code = ARENA_PROBE.format(root=str(REPOSITORY_ROOT), cap=cap)
    output = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    return output[0] == "True", int(output[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are a glibc feature")
def test_the_server_caps_malloc_arenas_that_threads_would_multiply():
    capped, capped_heaps = arena_count(cap=True)
    uncapped, uncapped_heaps = arena_count(cap=False)
    assert capped and not uncapped
    assert uncapped_heaps > app.MALLOC_ARENAS  # the probe's threads do spread over more arenas without the cap
    assert capped_heaps <= app.MALLOC_ARENAS


def test_an_arena_limit_set_by_the_user_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert app.limit_malloc_arenas() is False
