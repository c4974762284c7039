"""Saving, loading and pushing models in the Hub format.

Local folders are tested in-process. Hub downloads run against a real Hub-compatible server
(olah, serving git repositories on 127.0.0.1) from a subprocess, because huggingface_hub reads
HF_ENDPOINT once, at import. Pushes replace only the two HTTP methods of HfApi.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import httpx2
import hub_server
import pytest
import requests
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    LocalTokenNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.hf_api import CommitInfo, RepoUrl

from siamese.data.datasets import DIGITS_PREPROCESSING
from siamese.hub.push import PushError, push_model, retry_command
from siamese.modeling import pretrained
from siamese.modeling.files import MODEL_FILES, ModelLoadError
from siamese.modeling.network import EmbeddingNet
from siamese.modeling.pretrained import load_model, read_metrics, save_model

COMMAND = "python train.py --preset mnist --epochs 1 --out runs/tiny"
BUNDLED_FACES = Path(__file__).resolve().parents[1] / "pretrained" / "faces"
METRICS = {
    "task": "digits",
    "dataset": {"name": "mnist", "train_size": 60000, "test_size": 10000, "test": "the official MNIST test set"},
    "test": {"knn_accuracy": 0.9712, "knn_k": 5, "precision_at_1": 0.9655, "map_at_r": 0.9021},
    "training": {"epochs": 1, "seconds": 12.5, "device": "cpu", "precision": "fp32", "command": COMMAND},
}


def tiny_model(seed: int = 0, embedding_dim: int = 8, **architecture) -> EmbeddingNet:
    """A small convnet whose BatchNorm statistics are not the defaults, so buffers round-trip too."""
    torch.manual_seed(seed)
    model = EmbeddingNet(
        architecture="convnet",
        embedding_dim=embedding_dim,
        **architecture,
        widths=(8, 16),
        image_size=(28, 28),
        preprocessing=DIGITS_PREPROCESSING,
        calibration={
            "threshold": 0.75,
            "threshold_strict": 0.7,
            "distance": "euclidean",
            "rule": "same when distance <= threshold",
        },
        training={"data": "mnist", "split": "official", "command": COMMAND},
    )
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 1, 28, 28))
    return model.eval()


def embeddings_of(model: EmbeddingNet) -> torch.Tensor:
    with torch.inference_mode():
        return model(hub_server.probe_images())  # (2, D)


@pytest.fixture
def saved(tmp_path):
    """A model saved by save_model into tmp_path/model; returns (model, folder)."""
    model = tiny_model()
    return model, save_model(model, tmp_path / "model", METRICS, COMMAND)


def rewrite_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


# ------------------------------------------------------------------------------------------
# Local folders


def test_save_then_load_gives_identical_embeddings_in_eval_mode(saved, tmp_path):
    model, folder = saved
    loaded = load_model(folder)
    assert not loaded.training
    assert torch.equal(embeddings_of(loaded), embeddings_of(model))
    assert loaded.config_dict() == model.config_dict()
    assert sorted(path.name for path in folder.iterdir()) == sorted(MODEL_FILES)
    assert [path.name for path in tmp_path.iterdir()] == ["model"]  # no temporary folder left
    assert read_metrics(folder) == METRICS
    assert COMMAND in (folder / "README.md").read_text()


@pytest.mark.parametrize(
    "architecture",
    [{"pooling": "flatten"}, {"parts": 3, "normalize": True}],
    ids=["flattened-feature-map", "part-embeddings"],
)
def test_every_neck_round_trips_through_save_and_load(tmp_path, architecture):
    model = tiny_model(embedding_dim=8, **architecture)
    loaded = load_model(save_model(model, tmp_path / "model", METRICS, COMMAND))
    assert loaded.config_dict() == model.config_dict()
    assert torch.equal(embeddings_of(loaded), embeddings_of(model))


def test_strict_loading_names_shapes_that_differ(saved):
    _, folder = saved
    rewrite_config(folder, embedding_dim=16)
    with pytest.raises(ModelLoadError, match=r"does not match.*shapes differ: ") as caught:
        load_model(folder)
    assert "neck.2.weight: weights (8, 16), config (16, 16)" in str(caught.value)


@pytest.mark.parametrize(
    "widths, named",
    [
        ([8, 16, 32], "missing from the weights: backbone.6.0.weight, "),
        ([8], "unexpected in the weights: backbone.3.0.weight, "),
    ],
)
def test_strict_loading_names_missing_and_unexpected_keys(saved, widths, named):
    _, folder = saved
    rewrite_config(folder, widths=widths)
    with pytest.raises(ModelLoadError, match="does not match") as caught:
        load_model(folder)
    assert named in str(caught.value)
    assert "more" in str(caught.value)  # long key lists are cut short


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"embedding_dim": 8}', "no 'architecture' key"),
        ('{"architecture": "resnet"}', "architecture must be one of"),
    ],
)
def test_invalid_config_json_gets_a_clear_message(saved, content, reason):
    _, folder = saved
    (folder / "config.json").write_text(content)
    with pytest.raises(ModelLoadError, match="invalid config.json") as caught:
        load_model(folder)
    assert reason in str(caught.value)


def test_corrupted_safetensors_header_gets_a_clear_message(saved):
    _, folder = saved
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a json header" + weights.read_bytes()[25:])
    with pytest.raises(ModelLoadError, match="model.safetensors of model folder .* is corrupted or truncated"):
        load_model(folder)


def test_truncated_safetensors_gets_a_clear_message(saved):
    _, folder = saved
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ModelLoadError, match="corrupted or truncated"):
        load_model(folder)


def test_folder_with_only_a_pickle_is_refused_without_unpickling(saved, monkeypatch):
    model, folder = saved
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a pickle file was loaded")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    with pytest.raises(ModelLoadError, match=r"only pickle weights \(pytorch_model.bin\).*never loaded"):
        load_model(folder)


def test_missing_weights_file_gets_a_clear_message(saved):
    _, folder = saved
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="has no model.safetensors"):
        load_model(folder)


def test_save_replaces_an_existing_folder_completely(saved, tmp_path):
    _, folder = saved
    (folder / "stale.txt").write_text("from an older run")
    newer = tiny_model(seed=1)
    save_model(newer, folder, {**METRICS, "task": "digits", "test": {"knn_accuracy": 0.5}}, COMMAND)
    assert not (folder / "stale.txt").exists()
    assert torch.equal(embeddings_of(load_model(folder)), embeddings_of(newer))
    assert read_metrics(folder)["test"] == {"knn_accuracy": 0.5}
    assert [path.name for path in tmp_path.iterdir()] == ["model"]


def test_interrupted_save_leaves_the_old_folder_intact_and_no_temporary_folder(saved, tmp_path, monkeypatch):
    _, folder = saved
    before = hub_server.folder_files(folder)

    def half_written(model, filename, *args, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 100)
        raise OSError("No space left on device")

    monkeypatch.setattr("safetensors.torch.save_model", half_written)
    with pytest.raises(OSError, match="No space left"):
        save_model(tiny_model(seed=1), folder, METRICS, COMMAND)
    assert hub_server.folder_files(folder) == before
    assert [path.name for path in tmp_path.iterdir()] == ["model"]


def test_failed_swap_puts_the_old_folder_back(saved, tmp_path, monkeypatch):
    _, folder = saved
    before = hub_server.folder_files(folder)
    real_replace = pretrained.os.replace
    calls = []

    def failing_second_rename(source, target):
        calls.append((source, target))
        if len(calls) == 2:  # the new folder moving into place
            raise OSError("rename failed")
        real_replace(source, target)

    monkeypatch.setattr(pretrained.os, "replace", failing_second_rename)
    with pytest.raises(OSError, match="rename failed"):
        save_model(tiny_model(seed=1), folder, METRICS, COMMAND)
    assert hub_server.folder_files(folder) == before
    assert [path.name for path in tmp_path.iterdir()] == ["model"]


# ------------------------------------------------------------------------------------------
# Pushing


class RecordingApi(HfApi):
    """A real HfApi whose two HTTP calls are replaced: they record, then succeed or raise `failure`."""

    def __init__(self, failure: Exception | None = None, fail_on: str = "create_repo"):
        super().__init__(token="hf_test")  # nothing is sent: both HTTP methods are replaced
        self.calls: list[tuple[str, dict]] = []
        self.failure, self.fail_on = failure, fail_on

    def _record(self, name: str, arguments: dict) -> None:
        self.calls.append((name, arguments))
        if self.failure is not None and name == self.fail_on:
            raise self.failure

    def create_repo(self, repo_id, **arguments):
        self._record("create_repo", {"repo_id": repo_id, **arguments})
        return RepoUrl(f"{self.endpoint}/{repo_id}", endpoint=self.endpoint)

    def upload_folder(self, **arguments):
        self._record("upload_folder", arguments)
        url = f"{self.endpoint}/{arguments['repo_id']}/commit/abc123"
        return CommitInfo(
            commit_url=url, commit_message=arguments["commit_message"], commit_description="", oid="abc123"
        )


def http_error(error_class, status: int, text: str) -> HfHubHTTPError:
    request = httpx2.Request("POST", "https://hub.invalid/api/repos/create")
    return error_class(text, response=httpx2.Response(status, request=request))


def test_push_validates_then_creates_the_repo_and_uploads_in_one_commit(saved):
    _, folder = saved
    api = RecordingApi()
    url = push_model(folder, "someone/tiny", private=True, api=api)
    assert url == "https://huggingface.co/someone/tiny/commit/abc123"
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    create, upload = api.calls[0][1], api.calls[1][1]
    assert create["repo_id"] == "someone/tiny" and create["exist_ok"] is True and create["private"] is True
    assert upload["repo_id"] == "someone/tiny" and upload["folder_path"] == folder
    assert upload["commit_message"] == "Upload convnet embedding model (8-d) trained on mnist for 1 epochs"


def test_push_uses_the_given_commit_message(saved):
    _, folder = saved
    api = RecordingApi()
    push_model(folder, "someone/tiny", commit_message="Retrain with more epochs", api=api)
    assert api.calls[1][1]["commit_message"] == "Retrain with more epochs"


@pytest.mark.parametrize(
    "failure, fail_on, reason",
    [
        (LocalTokenNotFoundError("Token is required"), "create_repo", "no valid Hugging Face token"),
        (http_error(HfHubHTTPError, 401, "401 Unauthorized"), "create_repo", "no valid Hugging Face token"),
        (http_error(HfHubHTTPError, 403, "403 Forbidden"), "upload_folder", "no write access to 'someone/tiny'"),
        (http_error(BadRequestError, 400, "400 Invalid repo name"), "create_repo", "failed while creating the repo"),
        (http_error(RepositoryNotFoundError, 404, "404 Not Found"), "upload_folder", "not found or is not access"),
        (requests.ConnectionError("Failed to resolve host"), "upload_folder", "could not be reached"),
        (httpx2.ConnectError("Connection refused"), "create_repo", "could not be reached"),
    ],
)
def test_push_failure_keeps_the_folder_and_gives_the_retry_command(saved, failure, fail_on, reason):
    _, folder = saved
    before = hub_server.folder_files(folder)
    with pytest.raises(PushError) as caught:
        push_model(folder, "someone/tiny", api=RecordingApi(failure, fail_on))
    message = str(caught.value)
    assert reason in message
    assert f"The local model folder {folder} is complete and intact" in message
    assert f"python train.py --push-only {folder} --push-to-hub someone/tiny" in message
    assert caught.value.__cause__ is failure
    assert hub_server.folder_files(folder) == before


def test_push_refuses_an_incomplete_or_broken_folder_before_any_request(saved):
    _, folder = saved
    api = RecordingApi()
    (folder / "README.md").unlink()
    with pytest.raises(PushError, match=r"Nothing was uploaded.*missing README.md"):
        push_model(folder, "someone/tiny", api=api)
    (folder / "README.md").write_text("card")
    rewrite_config(folder, embedding_dim=4)
    with pytest.raises(PushError, match=r"Nothing was uploaded.*does not match"):
        push_model(folder, "someone/tiny", api=api)
    assert api.calls == []


def test_retry_command_quotes_the_folder_and_keeps_private():
    assert retry_command("runs/my model", "me/tiny", private=True) == (
        "python train.py --push-only 'runs/my model' --push-to-hub me/tiny --private"
    )


# ------------------------------------------------------------------------------------------
# Hub repositories, through a real server


@pytest.fixture(scope="module")
def hub_repos(tmp_path_factory):
    """olah serving org/model (tag v1, then a second commit on main), org/no-weights (a pickle, no
    metrics) and org/never-fetched; yields what the tests compare with."""
    reason = hub_server.olah_missing_reason()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("hub")
    first, second = tiny_model(seed=0), tiny_model(seed=1)
    first_folder = save_model(first, workdir / "first", METRICS, COMMAND)
    second_folder = save_model(second, workdir / "second", {**METRICS, "test": {"knn_accuracy": 0.5}}, COMMAND)
    with hub_server.olah_server(workdir / "server") as (endpoint, mirrors):
        first_sha = hub_server.commit_files(
            mirrors, "org/model", hub_server.folder_files(first_folder), "first", tag="v1"
        )
        hub_server.commit_files(mirrors, "org/model", hub_server.folder_files(second_folder), "second")
        no_weights = hub_server.folder_files(first_folder)
        no_weights.pop("model.safetensors")
        no_weights.pop("metrics.json")
        no_weights["pytorch_model.bin"] = (workdir / "first" / "config.json").read_bytes() * 8  # never downloaded
        hub_server.commit_files(mirrors, "org/no-weights", no_weights, "pickle only")
        hub_server.commit_files(mirrors, "org/never-fetched", hub_server.folder_files(first_folder), "unused")
        # The bundled faces model (dlib's ported network, 22 MB) goes up and comes back like the others.
        hub_server.commit_files(mirrors, "org/faces", hub_server.folder_files(BUNDLED_FACES), "faces")
        yield {
            "endpoint": endpoint,
            "hf_home": workdir / "hf_home",
            "first_sha": first_sha,
            "first": embeddings_of(first).tolist(),
            "second": embeddings_of(second).tolist(),
        }


@pytest.fixture(scope="module")
def online(hub_repos):
    """One subprocess runs every online request against the server and fills the cache."""
    requests_to_run = {
        "tag": {"op": "load", "name": "org/model", "revision": "v1"},
        "sha": {"op": "load", "name": "org/model", "revision": hub_repos["first_sha"]},
        "main": {"op": "load", "name": "org/model"},
        "metrics_v1": {"op": "metrics", "name": "org/model", "revision": "v1"},
        "missing_repo": {"op": "load", "name": "org/does-not-exist"},
        "missing_revision": {"op": "load", "name": "org/model", "revision": "no-such-tag"},
        "missing_file": {"op": "load", "name": "org/no-weights"},
        "no_metrics": {"op": "metrics", "name": "org/no-weights"},
        "faces": {"op": "load", "name": "org/faces"},
        "faces_metrics": {"op": "metrics", "name": "org/faces"},
    }
    environment = hub_server.hub_environment(hub_repos["endpoint"], hub_repos["hf_home"])
    results = hub_server.run_probe(list(requests_to_run.values()), environment)
    return dict(zip(requests_to_run, results, strict=True))


@pytest.mark.slow
def test_hub_load_by_tag_sha_and_main_gives_the_committed_weights(hub_repos, online):
    assert online["tag"] == {"embeddings": hub_repos["first"], "training": False}
    assert online["sha"] == {"embeddings": hub_repos["first"], "training": False}
    assert online["main"] == {"embeddings": hub_repos["second"], "training": False}
    assert online["metrics_v1"] == {"metrics": METRICS}


@pytest.mark.slow
def test_the_bundled_faces_model_pulls_from_the_hub_with_the_same_weights_and_card_figures(online):
    local = load_model(BUNDLED_FACES)
    with torch.inference_mode():
        expected = local(hub_server.probe_images(3, 150, 150))  # (2, 128)
    assert torch.equal(torch.tensor(online["faces"]["embeddings"]), expected)
    assert online["faces_metrics"]["metrics"] == read_metrics(BUNDLED_FACES)


def test_the_bundled_faces_model_passes_the_push_checks(tmp_path):
    api = RecordingApi()
    push_model(BUNDLED_FACES, "someone/faces", api=api)
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[1][1]["folder_path"] == BUNDLED_FACES


@pytest.mark.slow
def test_hub_missing_repo_revision_and_file_get_clear_messages(online):
    assert online["missing_repo"]["error"] == "ModelLoadError"
    assert "Hub repo 'org/does-not-exist' not found" in online["missing_repo"]["message"]
    assert "revision 'no-such-tag' not found in Hub repo 'org/model'" in online["missing_revision"]["message"]
    assert "branches and tags: main, v1" in online["missing_revision"]["message"]
    assert "Hub repo 'org/no-weights' has no model.safetensors" in online["missing_file"]["message"]
    assert "Pickle weights are never loaded" in online["missing_file"]["message"]
    assert online["no_metrics"] == {"metrics": None}


@pytest.mark.slow
def test_hub_load_works_offline_from_the_cache_it_filled(hub_repos, online):
    requests_to_run = [
        {"op": "load", "name": "org/model", "revision": "v1"},
        {"op": "load", "name": "org/model", "revision": hub_repos["first_sha"]},
        {"op": "load", "name": "org/model"},
        {"op": "load", "name": "org/never-fetched"},
    ]
    environment = hub_server.hub_environment(hub_repos["endpoint"], hub_repos["hf_home"], offline=True)
    tag, sha, main, never_fetched = hub_server.run_probe(requests_to_run, environment)
    assert tag["embeddings"] == sha["embeddings"] == hub_repos["first"]
    assert main["embeddings"] == hub_repos["second"]
    assert never_fetched["error"] == "ModelLoadError"
    assert "offline mode is on" in never_fetched["message"]
    assert "not in the local cache" in never_fetched["message"]


@pytest.mark.slow
def test_hub_unreachable_with_nothing_cached_gets_a_clear_message(tmp_path):
    dead_endpoint = f"http://127.0.0.1:{hub_server.free_port()}"
    environment = hub_server.hub_environment(dead_endpoint, tmp_path / "hf_home")
    [result] = hub_server.run_probe([{"op": "load", "name": "org/model"}], environment, skip_retry_waits=True)
    assert result["error"] == "ModelLoadError"
    assert f"the Hub ({dead_endpoint}) could not be reached" in result["message"]
    assert "not in the local cache" in result["message"]


def test_loading_a_local_folder_with_a_revision_is_refused(saved):
    _, folder = saved
    with pytest.raises(ValueError, match="Hub repos only"):
        load_model(folder, revision="v1")


def test_copied_folder_loads_like_the_original(saved, tmp_path):
    model, folder = saved
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert torch.equal(embeddings_of(load_model(copy)), embeddings_of(model))
