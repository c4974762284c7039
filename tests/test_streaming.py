"""Folders streamed from the decoded-image cache train exactly as the same folders held in memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.data.cache import MappedImages
from siamese.data.folders import DataError, load_folder_splits, load_image_folder, stream_image_folder
from siamese.training import datasets as training_datasets
from siamese.training.config import build_config
from siamese.training.datasets import load_splits, should_stream
from siamese.training.loop import train

PREPROCESSING = {"kind": "folder", "grayscale": False, "size": [16, 16], "mean": 0.5, "std": 0.5}


def write_folder(root, classes: int = 8, per_class: int = 6):
    """Colour PNGs whose class shows as a bright row band, plus seeded noise; file names unsorted on purpose."""
    rng = np.random.default_rng(3)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 60, (18, 20, 3)).astype(np.uint8)
            pixels[2 * label : 2 * label + 2] = 255
            Image.fromarray(pixels).save(folder / f"{(7 * index) % per_class}_{index}.png")
    return root


def test_mapped_images_read_the_same_pixels_as_decoding_into_memory(tmp_path):
    data = write_folder(tmp_path / "data")
    in_memory = load_image_folder(data, PREPROCESSING)
    streamed = stream_image_folder(data, PREPROCESSING, tmp_path / "cache", workers=0)
    assert isinstance(streamed.images, MappedImages) and streamed.streamed and not in_memory.streamed
    assert streamed.images.shape == in_memory.images.shape
    assert torch.equal(streamed.labels, in_memory.labels) and streamed.class_names == in_memory.class_names
    assert torch.equal(streamed.images[:], in_memory.images)
    picks = torch.tensor([40, 3, 3, 17, 0])
    assert torch.equal(streamed.images[picks], in_memory.images[picks])
    subset = streamed.subset(torch.tensor([5, 9, 30]))  # lazy: still a view of the cache
    assert isinstance(subset.images, MappedImages)
    assert torch.equal(subset.images[:], in_memory.images[[5, 9, 30]])


def test_streamed_splits_and_training_equal_the_in_memory_ones(tmp_path):
    data = write_folder(tmp_path / "data")
    common = {
        "dataset": "folder", "data_root": str(data), "image_size": [16, 16], "grayscale": False,
        "test_classes": ["class_6", "class_7"], "val_classes": ["class_4", "class_5"], "widths": [4, 8],
        "embedding_dim": 10, "parts": 0, "classes_per_batch": 4, "samples_per_class": 3, "epochs": 2,
        "device": "cpu", "progress": False, "one_shot_draws": 5,
    }  # fmt: skip
    results = {}
    for stream in ("never", "always"):
        run = {"stream": stream, "cache_dir": str(tmp_path / "cache"), "out": str(tmp_path / stream)}
        config = build_config({**common, **run})
        splits = load_splits(config)
        assert splits.train.streamed == (stream == "always")
        results[stream] = train(config, splits)
    memory, streamed = results["never"], results["always"]
    for name, value in memory.model.state_dict().items():
        assert torch.equal(value, streamed.model.state_dict()[name]), name
    assert [r["loss"] for r in memory.history] == [r["loss"] for r in streamed.history]
    assert memory.metrics["roc_auc"] == streamed.metrics["roc_auc"]
    assert memory.model.calibration == streamed.model.calibration


def test_auto_streams_only_folders_too_large_for_memory(tmp_path, monkeypatch):
    data = write_folder(tmp_path / "data")  # 48 images of 3 x 16 x 16 = 36,864 bytes decoded
    config = build_config({"dataset": "folder", "data_root": str(data), "stream": "auto"})
    assert not should_stream(config, PREPROCESSING)
    monkeypatch.setattr(training_datasets, "STREAM_ABOVE_BYTES", 36_863)
    assert should_stream(config, PREPROCESSING)
    monkeypatch.setattr(training_datasets, "STREAM_ABOVE_BYTES", 36_864)
    assert not should_stream(config, PREPROCESSING)
    assert should_stream(build_config({"dataset": "folder", "data_root": str(data), "stream": "always"}), PREPROCESSING)
    with pytest.raises(ValueError, match="stream must be one of"):
        build_config({"dataset": "folder", "stream": "sometimes"})


def test_an_unreadable_file_is_named_or_skipped_and_a_skipping_cache_is_not_reused_silently(tmp_path):
    data = write_folder(tmp_path / "data")
    broken = data / "class_2" / "broken.png"
    broken.write_bytes(b"not a png at all")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="broken.png.*--skip-unreadable"):
        stream_image_folder(data, PREPROCESSING, cache, workers=0)
    with pytest.warns(UserWarning, match="broken.png"):
        skipped = stream_image_folder(data, PREPROCESSING, cache, skip_unreadable=True, workers=2)
    assert len(skipped) == 48 and str(broken) not in skipped.paths
    with pytest.warns(UserWarning, match="broken.png"):
        in_memory = load_image_folder(data, PREPROCESSING, skip_unreadable=True)
    assert torch.equal(skipped.images[:], in_memory.images)
    with pytest.raises(DataError, match="broken.png"):  # the cache from the skipping build names it too
        stream_image_folder(data, PREPROCESSING, cache, workers=0)


def test_load_folder_splits_with_a_cache_gives_the_same_classes_lazily(tmp_path):
    data = write_folder(tmp_path / "data")
    arguments = {"test_classes": ["class_0"], "val_classes": ["class_1"]}
    memory = load_folder_splits(data, PREPROCESSING, **arguments)
    streamed = load_folder_splits(data, PREPROCESSING, cache_dir=tmp_path / "cache", **arguments)
    for part in ("train", "test", "validation"):
        a, b = getattr(memory, part), getattr(streamed, part)
        assert isinstance(b.images, MappedImages)
        assert torch.equal(a.images, b.images[:]) and torch.equal(a.labels, b.labels) and a.class_names == b.class_names
