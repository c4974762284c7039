"""train.py end to end on a tiny image folder written by the test."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

import train
from siamese.modeling.pretrained import load_model


def write_classes(root, classes: int = 6, per_class: int = 4):
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 50, (30, 26)).astype(np.uint8)
            pixels[3 * label : 3 * label + 4, :] = 255  # each class a bar at its own height
            Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def test_folder_training_writes_a_complete_model_folder(tmp_path, capsys):
    data = write_classes(tmp_path / "data", classes=8)
    out = tmp_path / "model"
    code = train.main(
        [
            "--dataset", "folder", "--data-root", str(data), "--test-classes", "class_4", "class_5",
            "--val-classes", "class_6", "class_7",
            "--image-size", "24", "20", "--widths", "8", "16", "--embedding-dim", "10", "--parts", "4",
            "--classes-per-batch", "4", "--samples-per-class", "2", "--epochs", "2",
            "--precision", "fp32", "--progress", "false", "--one-shot-draws", "5", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert {"config.json", "model.safetensors", "metrics.json", "README.md", "history.json", "history.png"} <= {
        path.name for path in out.iterdir()
    }
    assert not (out / "checkpoint.pt").exists()
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["calibration"]["threshold"] == metrics["test"]["threshold"] > 0
    assert "class_6, class_7" in config["calibration"]["measured_on"]
    assert metrics["dataset"]["validation_classes"] == ["class_6", "class_7"]
    assert 0 <= metrics["test"]["false_accept_rate"] <= 1 and 0 <= metrics["test"]["false_reject_rate"] <= 1
    assert config["preprocessing"]["size"] == [24, 20] and config["preprocessing"]["kind"] == "folder"
    assert metrics["dataset"]["test_classes"] == ["class_4", "class_5"]
    assert metrics["test"]["one_shot_ways"] == 2
    model = load_model(str(out))
    assert model.calibration["threshold"] == config["calibration"]["threshold"]
    printed = capsys.readouterr().out
    assert "test roc_auc" in printed and "Model folder written" in printed


def test_unusable_data_stops_before_training(tmp_path, capsys):
    data = write_classes(tmp_path / "data", classes=1)
    assert train.main(["--dataset", "folder", "--data-root", str(data), "--out", str(tmp_path / "m")]) == 2
    assert "single class" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_push_only_needs_a_repo(capsys):
    assert train.main(["--push-only", "somewhere"]) == 2
    assert "--push-to-hub" in capsys.readouterr().err


def test_nested_folders_train_with_held_out_groups_and_a_size_from_the_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for group in ("g1", "g2", "g3", "g4"):
        for label in range(3):
            folder = tmp_path / "data" / group / f"c{label}"
            folder.mkdir(parents=True)
            for index in range(3):
                pixels = rng.integers(150, 255, (40, 20)).astype(np.uint8)  # tall images, light background
                pixels[4 * label : 4 * label + 6, :] = 0
                Image.fromarray(pixels).save(folder / f"{index}.png")
    out = tmp_path / "model"
    code = train.main(
        [
            "--dataset", "folder", "--data-root", str(tmp_path / "data"), "--class-depth", "2",
            "--test-groups", "g4", "--val-groups", "g3", "--widths", "8", "16", "--embedding-dim", "10",
            "--classes-per-batch", "3", "--samples-per-class", "2", "--epochs", "2", "--precision", "fp32",
            "--progress", "false", "--one-shot-draws", "5", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["preprocessing"]["size"] == [40, 24]  # 40x20 images: aspect kept, width rounded up to 8s
    assert metrics["dataset"]["test_classes"] == ["g4/c0", "g4/c1", "g4/c2"]
    assert metrics["dataset"]["validation_classes"] == ["g3/c0", "g3/c1", "g3/c2"]
    assert "g3/c0, g3/c1, g3/c2" in config["calibration"]["measured_on"]
    assert metrics["training"]["config"]["horizontal_flip"] is False  # folders are not mirrored by default
    printed = capsys.readouterr().out
    assert "epoch 1 took" in printed and "more for the remaining 1 epochs" in printed
