"""Image folders: mixed files load, bad folders get messages naming the culprit, splits never leak."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.data.folders import (
    ATT_TEST_CLASSES,
    DataError,
    class_disjoint_split,
    class_group,
    faces_preprocessing,
    image_paths,
    infer_image_size,
    load_att_faces,
    load_folder_splits,
    load_image_folder,
    split_classes,
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


def write_nested(root, groups: dict[str, list[str]], per_class: int = 2, size=(30, 20)):
    rng = np.random.default_rng(1)
    for group, classes in groups.items():
        for name in classes:
            folder = root / group / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = rng.integers(0, 255, (size[1], size[0])).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


GROUPS = {
    "latin": ["A", "B", "C"],
    "greek": ["alpha", "beta"],
    "digits": ["0", "1", "2"],
    "math": ["plus", "minus"],
    "arrows": ["left", "right"],
}


def test_nested_folders_load_with_group_qualified_class_names(tmp_path):
    root = write_nested(tmp_path / "data", GROUPS)
    data = load_image_folder(root, PREPROCESSING, class_depth=2)
    assert len(data.class_names) == 12 and "latin/A" in data.class_names and "greek/beta" in data.class_names
    assert class_group("latin/A") == "latin" and class_group("A") is None
    with pytest.raises(DataError, match="A holds files .0.png, 1.png. but with --class-depth 2 it is a group"):
        load_image_folder(root / "latin", PREPROCESSING, class_depth=2)  # classes directly: one level too few
    (root / "latin" / "stray.png").write_bytes((root / "latin" / "A" / "0.png").read_bytes())
    with pytest.raises(DataError, match="latin holds files .stray.png. but with --class-depth 2 it is a group"):
        load_image_folder(root, PREPROCESSING, class_depth=2)


def test_held_out_groups_never_share_a_group_with_training():
    names = [f"{group}/{name}" for group, classes in GROUPS.items() for name in classes]
    for seed in range(6):
        train, validation, test = split_classes(names, test_fraction=0.25, val_fraction=0.2, seed=seed)
        groups = [{class_group(name) for name in part} for part in (train, validation, test)]
        assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
        assert sorted(train + validation + test) == sorted(names)
        assert len(groups[2]) == 1 and len(groups[1]) == 1  # round(0.25 * 5) and round(0.2 * 4) groups
    train, validation, test = split_classes(names, test_groups=["gr*"], val_groups=["math"])
    assert test == ["greek/alpha", "greek/beta"] and validation == ["math/minus", "math/plus"]


def test_class_and_group_names_accept_glob_patterns_and_unknown_ones_are_named():
    names = [f"s{number}" for number in range(1, 41)]
    train, validation, test = split_classes(names, test_classes=["s3?", "s40"], val_classes=["s1"])
    assert test == sorted(f"s{number}" for number in range(30, 41)) and validation == ["s1"]
    assert len(train) == 28
    with pytest.raises(DataError, match=r"'s9\?' is not in the data"):
        split_classes(names, test_classes=["s9?"])
    with pytest.raises(DataError, match="both validation and test: s35"):
        split_classes(names, test_classes=["s3*"], val_classes=["s35"])
    with pytest.raises(DataError, match="--test-groups needs nested folders"):
        split_classes(names, test_groups=["latin"])
    with pytest.raises(DataError, match="at least two classes must remain"):
        split_classes(names[:3], test_classes=["s1"], val_classes=["s2"])


def test_test_fraction_zero_trains_on_every_class_but_keeps_validation(tmp_path):
    root = write_folder(tmp_path / "data", {name: 2 for name in "abcdefgh"})
    splits = load_folder_splits(root, PREPROCESSING, test_fraction=0.0, val_fraction=0.25, seed=3)
    assert len(splits.test) == 0 and splits.description["test"] == "no test set"
    assert len(splits.validation.class_names) == 2 and len(splits.train.class_names) == 6
    assert not set(splits.validation.class_names) & set(splits.train.class_names)


def test_input_size_follows_the_median_aspect_ratio_and_caps_the_longer_side(tmp_path):
    square = write_nested(tmp_path / "square", {"g": ["a", "b"]}, size=(48, 48))
    assert infer_image_size(image_paths(square, class_depth=2)) == [48, 48]
    wide = write_nested(tmp_path / "wide", {"g": ["a", "b"]}, size=(200, 100))
    assert infer_image_size(image_paths(wide, class_depth=2)) == [32, 64]  # height, width; longer side capped at 64
    tall = write_nested(tmp_path / "tall", {"g": ["a", "b"]}, size=(23, 41))
    assert infer_image_size(image_paths(tall, class_depth=2)) == [40, 24]
