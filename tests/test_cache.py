"""The decoded-image cache against decoding each file directly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.data import cache as cache_module
from siamese.data.cache import CachedImages, build_cache, cache_key, prepare_in_processes
from siamese.data.folders import list_image_folder as folder_images
from siamese.data.images import ImageError, prepare_image

PREPROCESSING = {"kind": "faces", "grayscale": False, "size": [10, 12], "mean": 0.5, "std": 0.5}


def write_folder(root: Path, classes: int = 3, per_class: int = 4) -> Path:
    """Small PNGs and JPEGs of several sizes and modes, seeded."""
    generator = np.random.default_rng(0)
    for class_index in range(classes):
        folder = root / f"class_{class_index}"
        folder.mkdir(parents=True)
        for image_index in range(per_class):
            height, width = 8 + 3 * image_index, 14 + class_index
            pixels = generator.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            if image_index % 2:
                image.convert("L").save(folder / f"{image_index}.png")
            else:
                image.save(folder / f"{image_index}.jpg", quality=90)
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_folder(tmp_path / "images")


def test_round_trip_equals_decoding_each_file(folder, tmp_path):
    paths, labels, class_names = folder_images(folder)
    assert len(paths) == 12 and class_names == ["class_0", "class_1", "class_2"]
    shuffled = [len(paths) - 1 - i for i in range(len(paths))]  # the cache orders them itself
    cached = build_cache([paths[i] for i in shuffled], [labels[i] for i in shuffled], PREPROCESSING, tmp_path / "c")
    assert len(cached) == 12 and cached.shape == (12, 3, 10, 12)
    assert sorted(cached.paths) == sorted(str(path) for path in paths)
    for index, path in enumerate(cached.paths):
        assert int(cached.labels[index]) == class_names.index(Path(path).parent.name)
    everything = cached.batch(torch.arange(12))  # (12, 3, 10, 12)
    assert everything.dtype == torch.uint8
    direct = torch.stack([prepare_image(path, PREPROCESSING) for path in cached.paths])
    assert torch.equal(everything, direct)
    # Any order, with repeats, comes back as asked.
    picks = torch.tensor([7, 2, 11, 2, 0])
    assert torch.equal(cached.batch(picks), direct[picks])
    with pytest.raises(IndexError, match=r"\[0, 12\), got 0\.\.12"):
        cached.batch([0, 12])


def test_a_second_build_reuses_the_complete_cache_without_decoding(folder, tmp_path, monkeypatch):
    paths, labels, _ = folder_images(folder)
    first = build_cache(paths, labels, PREPROCESSING, tmp_path / "c", workers=0)

    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded although the cache was complete")

    monkeypatch.setattr(cache_module, "prepare_image", refuse)
    again = build_cache(paths, labels, PREPROCESSING, tmp_path / "c", workers=0)
    assert torch.equal(again.batch(range(12)), first.batch(range(12)))


def test_key_changes_when_a_file_label_or_preprocessing_changes(folder):
    paths, labels, _ = folder_images(folder)
    original = cache_key(paths, labels, PREPROCESSING)
    assert cache_key(list(reversed(paths)), list(reversed(labels)), PREPROCESSING) == original
    assert cache_key(paths, labels, PREPROCESSING | {"size": [10, 10]}) != original
    assert cache_key(paths, [1 - label if label < 2 else label for label in labels], PREPROCESSING) != original
    # New content and a later modification time: a replaced file.
    target = next(path for path in paths if path.suffix == ".png")
    status = target.stat()
    Image.new("L", Image.open(target).size, 255).save(target)
    os.utime(target, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
    assert cache_key(paths, labels, PREPROCESSING) != original


def test_a_changed_file_gets_a_fresh_cache_with_its_new_pixels(folder, tmp_path):
    paths, labels, _ = folder_images(folder)
    build_cache(paths, labels, PREPROCESSING, tmp_path / "c", workers=0)
    target = paths[1]
    Image.new("RGB", (20, 20), (255, 0, 0)).save(target)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 1_000_000_000))
    fresh = build_cache(paths, labels, PREPROCESSING, tmp_path / "c", workers=0)
    row = fresh.paths.index(str(target))
    assert torch.equal(fresh.batch([row])[0], prepare_image(target, PREPROCESSING))
    assert len(list((tmp_path / "c").glob("*.json"))) == 2


def test_a_build_that_fails_halfway_leaves_nothing_that_looks_complete(folder, tmp_path, monkeypatch):
    paths, labels, _ = folder_images(folder)
    calls = {"count": 0}
    real_prepare = cache_module.prepare_image

    def fail_on_the_sixth(path, preprocessing, name=None):
        calls["count"] += 1
        if calls["count"] == 6:
            raise KeyboardInterrupt  # as if the build were interrupted
        return real_prepare(path, preprocessing, name=name)

    monkeypatch.setattr(cache_module, "prepare_image", fail_on_the_sixth)
    with pytest.raises(KeyboardInterrupt):
        build_cache(paths, labels, PREPROCESSING, tmp_path / "c", workers=0)
    assert list((tmp_path / "c").iterdir()) == []
    # A process killed outright leaves its partial file behind; it is never mistaken for a cache.
    key = cache_key(paths, labels, PREPROCESSING)
    (tmp_path / "c" / f"{key}.uint8.partial-999999").write_bytes(b"\0" * 100)
    monkeypatch.setattr(cache_module, "prepare_image", real_prepare)
    cached = build_cache(paths, labels, PREPROCESSING, tmp_path / "c", workers=0)
    direct = torch.stack([prepare_image(path, PREPROCESSING) for path in cached.paths])
    assert torch.equal(cached.batch(range(12)), direct)


def test_an_index_whose_data_file_is_short_is_refused_clearly(folder, tmp_path):
    paths, labels, _ = folder_images(folder)
    cached = build_cache(paths, labels, PREPROCESSING, tmp_path / "c", workers=0)
    data_path = next((tmp_path / "c").glob("*.uint8"))
    del cached
    with open(data_path, "rb+") as handle:
        handle.truncate(100)
    with pytest.raises(ValueError, match="missing or not 4320 bytes"):
        CachedImages(next((tmp_path / "c").glob("*.json")))


def test_worker_errors_name_the_file(folder, tmp_path):
    paths, labels, _ = folder_images(folder)
    broken = folder / "class_2" / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="broken.png"):
        build_cache([*paths, broken], [*labels, 2], PREPROCESSING, tmp_path / "c", workers=2)
    assert list((tmp_path / "c").iterdir()) == []
    with pytest.raises(ValueError, match="same length, got 12 and 11"):
        build_cache(paths, labels[:-1], PREPROCESSING, tmp_path / "c")


def test_images_of_different_sizes_without_a_target_size_are_refused(folder, tmp_path):
    paths, labels, _ = folder_images(folder)
    with pytest.raises(ImageError, match=r"expected \(3, 8, 14\) like the others"):
        build_cache(paths, labels, {"kind": "faces", "grayscale": False}, tmp_path / "c", workers=0)


def test_preparing_in_processes_yields_each_image_or_its_error_in_order(folder):
    paths, _, _ = folder_images(folder)
    broken = folder / "class_1" / "broken.png"
    broken.write_bytes(b"not a png")
    paths = [*paths[:5], broken, *paths[5:]]
    results = list(prepare_in_processes(paths, PREPROCESSING, workers=2, chunk_size=2))
    assert isinstance(results[5], ImageError) and "broken.png" in str(results[5])
    expected = [prepare_image(path, PREPROCESSING) for path in paths if path != broken]
    assert all(torch.equal(found, direct) for found, direct in zip(results[:5] + results[6:], expected, strict=True))
    here = list(prepare_in_processes(paths, PREPROCESSING, names=[path.name for path in paths], workers=0))
    assert str(here[5]).startswith("broken.png: ") and torch.equal(here[0], expected[0])
