"""timm backbones: training from random weights, pretrained weights through a local Hub, offline reloads."""

from __future__ import annotations

import json
import subprocess
import sys

import hub_server
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from siamese.modeling.backbones import parse_backbone
from siamese.modeling.pretrained import load_model
from siamese.training.config import build_config


def write_colour_classes(root, classes: int = 6, per_class: int = 4):
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 50, (40, 40, 3)).astype(np.uint8)
            pixels[5 * label : 5 * label + 6, :, label % 3] = 255
            Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def test_backbone_names_must_say_timm():
    assert parse_backbone("timm:resnet18") == "resnet18"
    for bad in ("resnet18", "timm:", "torchvision:resnet18"):
        with pytest.raises(ValueError, match="timm:<name>"):
            parse_backbone(bad)
    with pytest.raises(ValueError, match="--pretrained needs --backbone"):
        build_config({"dataset": "folder", "pretrained": True})


def test_a_timm_backbone_trains_saves_reloads_and_serves_in_the_app(tmp_path):
    import train
    from app import ModelSpec, SimilarityApp

    data = write_colour_classes(tmp_path / "data")
    out = tmp_path / "model"
    code = train.main(
        [
            "--dataset", "folder", "--data-root", str(data), "--backbone", "timm:test_resnet",
            "--image-size", "48", "48", "--test-classes", "class_4", "class_5", "--val-classes", "class_2", "class_3",
            "--classes-per-batch", "2", "--samples-per-class", "2", "--epochs", "1", "--embedding-dim", "16",
            "--precision", "fp32", "--progress", "false", "--one-shot-draws", "2", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "timm" and config["backbone"] == "test_resnet"
    assert config["preprocessing"]["size"] == [48, 48] and config["preprocessing"]["grayscale"] is False
    model = load_model(str(out))
    image = str(data / "class_0" / "0.png")
    assert model.encode(image).shape == (1, 16)
    app = SimilarityApp([ModelSpec("timm", str(out))])
    verdict, result, _figure, _preview = app.compare_pair("timm", None, image, None, image)
    assert result["same"] is True and result["distance"] == pytest.approx(0.0, abs=1e-4)
    assert "Same" in verdict


def test_pretrained_weights_come_from_the_hub_and_saved_models_reload_offline(tmp_path):
    reason = hub_server.olah_missing_reason()
    if reason:
        pytest.skip(reason)
    torch.manual_seed(0)
    served = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    checkpoint = tmp_path / "checkpoint"
    timm.models.save_for_hf(served, str(checkpoint), safe_serialization=True)
    data = write_colour_classes(tmp_path / "data")
    expected = {key: value.tolist() for key, value in served.state_dict().items() if key == "conv1.0.weight"}
    code = f"""
import json, sys, torch
from siamese.training.config import build_config
from siamese.training.steps import build_model
from siamese.training.datasets import load_splits
config = build_config({{"dataset": "folder", "data_root": {str(data)!r}, "backbone": "timm:hf-hub:org/tiny",
    "pretrained": True, "image_size": [48, 48], "test_classes": ["class_5"], "val_classes": ["class_4"]}})
model = build_model(config, load_splits(config))
print(json.dumps({{"architecture": model.backbone_name,
    "weights": model.backbone.state_dict()["conv1.0.weight"].tolist()}}))
"""
    with hub_server.olah_server(tmp_path / "server") as (endpoint, mirrors):
        hub_server.commit_files(mirrors, "org/tiny", hub_server.folder_files(checkpoint), "tiny timm checkpoint")
        environment = hub_server.hub_environment(endpoint, tmp_path / "hf_home")
        online = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    assert online.returncode == 0, online.stderr
    loaded = json.loads(online.stdout.strip().splitlines()[-1])
    assert loaded["architecture"] == "test_resnet"  # what a saved model rebuilds, with no download
    assert loaded["weights"] == expected["conv1.0.weight"]
    # The server is gone: offline mode takes the weights from the Hub cache the first run filled.
    offline_environment = hub_server.hub_environment(endpoint, tmp_path / "hf_home", offline=True)
    offline = subprocess.run([sys.executable, "-c", code], env=offline_environment, capture_output=True, text=True)
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout.strip().splitlines()[-1])["weights"] == expected["conv1.0.weight"]
