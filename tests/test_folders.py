"""Image folders: mixed files load, bad folders get messages naming the culprit, splits never leak."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.folders import (
    ATT_TEST_CLASSES,
    DataError,
    class_disjoint_split,
    faces_preprocessing,
    load_att_faces,
    load_folder_splits,
    load_image_folder,
)

PREPROCESSING = faces_preprocessing(size=(16, 12))


def write_folder(root, classes: dict[str, int]):
    rng = np.random.default_rng(0)
    formats = [("png", "L", (20, 30)), ("jpg", "RGB", (40, 25)), ("pgm", "L", (92, 112)), ("png", "RGBA", (10, 10))]
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            suffix, mode, size = formats[index % len(formats)]
            pixels = rng.integers(0, 255, (size[1], size[0], len(mode)) if len(mode) > 1 else (size[1], size[0]))
            Image.fromarray(pixels.astype(np.uint8), mode=mode).save(root / name / f"{index}.{suffix}")
    return root


def _write_into(root, classes: dict[str, int]) -> None:
    """write_folder into an existing folder."""
    write_folder(root / "staging", classes)
    for folder in (root / "staging").iterdir():
        folder.rename(root / folder.name)
    (root / "staging").rmdir()


def test_mixed_sizes_modes_and_formats_load(tmp_path):
    root = write_folder(tmp_path / "data", {"cat": 4, "dog": 3, "eel": 2})
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x01")
    data = load_image_folder(root, PREPROCESSING)
    assert data.images.shape == (9, 1, 16, 12) and data.class_names == ["cat", "dog", "eel"]
    assert data.labels.tolist() == [0] * 4 + [1] * 3 + [2] * 2


@pytest.mark.parametrize(
    ("classes", "message"),
    [({}, "no class sub-folders"), ({"only": 3}, "single class"), ({"a": 3, "b": 1}, "class 'b'")],
)
def test_unusable_folders_are_named(tmp_path, classes, message):
    root = tmp_path / "data"
    root.mkdir()
    if classes:
        _write_into(root, classes)
    with pytest.raises(DataError, match=message):
        load_image_folder(root, PREPROCESSING)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere", PREPROCESSING)


def test_unreadable_files_stop_loading_unless_skipping_is_asked_for(tmp_path):
    root = write_folder(tmp_path / "data", {"a": 3, "b": 3})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png"):
        load_image_folder(root, PREPROCESSING)
    with pytest.warns(UserWarning, match="broken.png"):
        data = load_image_folder(root, PREPROCESSING, skip_unreadable=True)
    assert len(data) == 6


def test_class_disjoint_split_never_leaks(tmp_path):
    root = write_folder(tmp_path / "data", {name: 2 for name in "abcdefgh"})
    data = load_image_folder(root, PREPROCESSING)
    for seed in range(5):
        train, test = class_disjoint_split(data, test_fraction=0.25, seed=seed)
        assert not set(train.class_names) & set(test.class_names)
        assert len(test.class_names) == 2 and len(train) + len(test) == len(data)
        # Labels index each split's own class list, and the images went with their labels.
        for part in (train, test):
            for image, label, path in zip(part.images, part.labels, part.paths, strict=True):
                assert path.split("/")[-2] == part.class_names[label]
                assert torch.equal(image, data.images[data.paths.index(path)])
    train, test = class_disjoint_split(data, test_classes=["h", "c"])
    assert test.class_names == ["c", "h"]
    with pytest.raises(DataError, match="not in the data"):
        class_disjoint_split(data, test_classes=["zebra"])


def test_splits_record_the_test_classes(tmp_path):
    root = write_folder(tmp_path / "data", {name: 2 for name in "abcd"})
    splits = load_folder_splits(root, PREPROCESSING, test_classes=["b"])
    assert splits.description["test_classes"] == ["b"] and splits.preprocessing["size"] == [16, 12]


def test_att_faces_default_split(att_faces_root):
    splits = load_att_faces(att_faces_root)
    assert len(splits.train) == 300 and len(splits.test) == 100
    assert sorted(splits.test.class_names) == sorted(ATT_TEST_CLASSES)
    assert splits.train.images.shape[1:] == (1, 112, 92)
