"""Image folders with one sub-folder per class (the ImageFolder layout), and class-disjoint splits.

One-shot evaluation needs classes the model never saw, so the held-out set is made of whole
classes, never of images from training classes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from siamese.data import ImageSet, Splits
from siamese.images import ImageError, prepare_image

IMAGE_SUFFIXES = {".pgm", ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pbm"}
ATT_TEST_CLASSES = tuple(f"s{number}" for number in range(31, 41))


class DataError(ValueError):
    """A data folder that cannot be trained on; the message names the folder, class or file."""


def faces_preprocessing(size: tuple[int, int] = (112, 92), grayscale: bool = True) -> dict:
    """Resize to `size` (height, width), grey or colour, scaled to [-1, 1]."""
    return {"kind": "faces", "grayscale": grayscale, "size": [int(size[0]), int(size[1])], "mean": 0.5, "std": 0.5}


FACES_PREPROCESSING = faces_preprocessing()


def _class_folders(root: Path) -> list[Path]:
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: expected one sub-folder per class")
    folders = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        raise DataError(f"{root} has no class sub-folders: put each class's images in a folder named after it")
    if len(folders) < 2:
        raise DataError(f"{root} has a single class ({folders[0].name}): similarity needs at least two classes")
    return folders


def load_image_folder(
    root: str | Path, preprocessing: dict, skip_unreadable: bool = False, min_images_per_class: int = 2
) -> ImageSet:
    """Every image under root/<class>/, decoded and resized as `preprocessing` says."""
    root = Path(root)
    images, labels, paths, names = [], [], [], []
    for folder in _class_folders(root):
        count = 0
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue  # hidden files such as .DS_Store, nested folders
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                message = f"{path}: not an image file (suffix {path.suffix or 'none'})"
                if skip_unreadable:
                    warnings.warn(f"skipping {message}", stacklevel=2)
                    continue
                raise DataError(message + "; remove it or pass --skip-unreadable")
            try:
                tensor = prepare_image(path, preprocessing)  # (C, H, W) uint8
            except ImageError as error:
                if skip_unreadable:
                    warnings.warn(f"skipping {error}", stacklevel=2)
                    continue
                raise DataError(f"{error}; remove it or pass --skip-unreadable") from error
            images.append(tensor)
            labels.append(len(names))
            paths.append(str(path))
            count += 1
        if count < min_images_per_class:
            raise DataError(
                f"class {folder.name!r} in {root} has {count} usable image(s); each class needs at least "
                f"{min_images_per_class} so that it forms same-class pairs"
            )
        names.append(folder.name)
    return ImageSet(torch.stack(images), torch.tensor(labels, dtype=torch.long), names, paths)


def class_disjoint_split(
    image_set: ImageSet,
    test_classes: list[str] | tuple[str, ...] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[ImageSet, ImageSet]:
    """(train, test) where the test classes never appear in training.

    Named `test_classes` are used exactly; otherwise round(test_fraction * classes) classes
    (at least one, leaving at least two for training) are drawn with a seeded generator.
    """
    names = image_set.class_names
    if test_classes:
        unknown = sorted(set(test_classes) - set(names))
        if unknown:
            raise DataError(f"test classes {unknown} are not in the data; classes are: {', '.join(names)}")
        test_indices = sorted(names.index(name) for name in test_classes)
    else:
        count = min(max(1, round(test_fraction * len(names))), len(names) - 2)
        if count < 1:
            raise DataError(f"a class-disjoint split needs at least 3 classes, got {len(names)}")
        generator = torch.Generator().manual_seed(seed)
        test_indices = sorted(torch.randperm(len(names), generator=generator)[:count].tolist())
    if len(names) - len(test_indices) < 2:
        raise DataError("at least two classes must remain for training")
    is_test = torch.isin(image_set.labels, torch.tensor(test_indices))
    return _relabel(image_set, ~is_test), _relabel(image_set, is_test)


def _relabel(image_set: ImageSet, mask: torch.Tensor) -> ImageSet:
    """The images under `mask`, with labels renumbered 0..k-1 over the classes they contain."""
    subset = image_set.subset(torch.nonzero(mask).flatten())
    kept = torch.unique(subset.labels)
    mapping = torch.full((len(image_set.class_names),), -1, dtype=torch.long)
    mapping[kept] = torch.arange(len(kept))
    names = [image_set.class_names[index] for index in kept.tolist()]
    return ImageSet(subset.images, mapping[subset.labels], names, subset.paths)


def load_folder_splits(
    root: str | Path,
    preprocessing: dict,
    test_classes: list[str] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    skip_unreadable: bool = False,
    name: str = "folder",
    split_note: str | None = None,
) -> Splits:
    """A class folder split into training classes and unseen test classes, with a description."""
    image_set = load_image_folder(root, preprocessing, skip_unreadable=skip_unreadable)
    train, test = class_disjoint_split(image_set, test_classes, test_fraction, seed)
    description = {
        "name": name,
        "source": str(root),
        "classes": len(image_set.class_names),
        "train_size": len(train),
        "test_size": len(test),
        "train_classes": len(train.class_names),
        "test_classes": sorted(test.class_names),
        "test": "whole classes never seen in training"
        + (
            split_note
            or (" (named by --test-classes)" if test_classes else f" (a seeded {test_fraction:.0%} draw, seed {seed})")
        ),
    }
    return Splits(train, test, dict(preprocessing), description)


def load_att_faces(
    root: str | Path, preprocessing: dict | None = None, test_classes: list[str] | tuple[str, ...] = ATT_TEST_CLASSES
) -> Splits:
    """The AT&T faces (s1..s40): by default s31 to s40 are held out as unseen subjects."""
    note = " (the default: subjects s31 to s40)" if tuple(test_classes) == ATT_TEST_CLASSES else None
    return load_folder_splits(
        root, preprocessing or dict(FACES_PREPROCESSING), list(test_classes), name="att_faces", split_note=note
    )
