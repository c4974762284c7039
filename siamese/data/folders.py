"""Image folders with one sub-folder per class (the ImageFolder layout), and class-disjoint splits.

One-shot evaluation needs classes the model never saw, so the held-out sets (validation and
test) are made of whole classes, never of images from training classes. With `class_depth=2`
the layout is `group/class/*.png`: a class is named `group/class`, and the held-out sets can
be whole groups, so that no held-out class shares a group with training.
"""

from __future__ import annotations

import fnmatch
import os
import statistics
import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from siamese.data.cache import MappedImages, build_cache
from siamese.data.datasets import ImageSet, Splits
from siamese.data.images import ImageError, prepare_image

IMAGE_SUFFIXES = {".pgm", ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pbm"}
ATT_TEST_CLASSES = tuple(f"s{number}" for number in range(31, 41))


class DataError(ValueError):
    """A data folder that cannot be trained on; the message names the folder, class or file."""


def faces_preprocessing(size: tuple[int, int] = (112, 92), grayscale: bool = True) -> dict:
    """Resize to `size` (height, width), grey or colour, scaled to [-1, 1]."""
    return {"kind": "faces", "grayscale": grayscale, "size": [int(size[0]), int(size[1])], "mean": 0.5, "std": 0.5}


FACES_PREPROCESSING = faces_preprocessing()


def _visible_folders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def _class_folders(root: Path, class_depth: int = 1) -> list[Path]:
    """The class folders `class_depth` levels below `root` (1: root/class, 2: root/group/class)."""
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: expected one sub-folder per class")
    if class_depth < 1:
        raise DataError(f"--class-depth must be 1 (root/class/) or more (2: root/group/class/), got {class_depth}")
    folders = [root]
    for _ in range(class_depth - 1):
        folders = [group for folder in folders for group in _visible_folders(folder)]
        for group in folders:
            stray = [path.name for path in group.iterdir() if path.is_file() and not path.name.startswith(".")]
            if stray:
                raise DataError(
                    f"{group} holds files ({', '.join(sorted(stray)[:3])}) but with --class-depth {class_depth} "
                    f"it is a group folder: images belong in its class sub-folders"
                )
    folders = [class_folder for folder in folders for class_folder in _visible_folders(folder)]
    if not folders:
        layout = "/".join(["group"] * (class_depth - 1) + ["class"])
        raise DataError(
            f"{root} has no class sub-folders ({layout}/): put each class's images in a folder named after it"
        )
    if len(folders) < 2:
        raise DataError(f"{root} has a single class ({folders[0].name}): similarity needs at least two classes")
    return folders


def class_group(class_name: str) -> str | None:
    """The group of a nested class name (`latin/U+0041` -> `latin`); None for a flat one."""
    return class_name.rsplit("/", 1)[0] if "/" in class_name else None


def image_paths(root: str | Path, class_depth: int = 1) -> list[Path]:
    """Every image file in the class folders, in loading order (hidden and non-image files left out, silently)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader itself warns about (or refuses) non-image files
        return list_image_folder(root, class_depth, skip_unreadable=True)[0]


def infer_image_size(paths: list[Path], max_side: int = 64, sample: int = 200, seed: int = 0) -> list[int]:
    """An input size (height, width) that fits the data: the median aspect ratio, the longer side the
    median longer side capped at `max_side`, both rounded to multiples of 8 (at least 16).

    Only image headers are read, for a seeded sample of up to `sample` files.
    """
    if not paths:
        raise DataError("no image files to size the input from")
    generator = torch.Generator().manual_seed(seed)
    chosen = [paths[index] for index in torch.randperm(len(paths), generator=generator)[:sample].tolist()]
    sizes = []
    for path in chosen:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)  # (width, height)
        except (UnidentifiedImageError, OSError):
            continue  # unreadable files are reported when the images are loaded
    if not sizes:
        raise DataError(f"none of {len(chosen)} sampled files could be read to size the input")
    aspect = statistics.median(height / width for width, height in sizes)  # height / width
    longer = min(statistics.median(max(width, height) for width, height in sizes), max_side)

    def multiple_of_8(value: float) -> int:
        return max(16, int(value / 8 + 0.5) * 8)  # half up: 20 -> 24

    if aspect >= 1:
        return [multiple_of_8(longer), multiple_of_8(longer / aspect)]
    return [multiple_of_8(longer * aspect), multiple_of_8(longer)]


def list_image_folder(
    root: str | Path, class_depth: int = 1, skip_unreadable: bool = False
) -> tuple[list[Path], list[int], list[str]]:
    """The image files under root/<class>/ (or root/<group>/<class>/) with labels, and the class names
    in label order, without decoding anything. A file that is not an image stops the listing with its
    name, or with `skip_unreadable` is left out with a warning; hidden files and nested folders are ignored.
    """
    root = Path(root)
    paths, labels, names = [], [], []
    for folder in _class_folders(root, class_depth):
        # scandir and name strings, not pathlib: listing 100,000 files stays well under a second.
        with os.scandir(folder) as entries:
            files = sorted((entry.name, entry.path) for entry in entries if not entry.is_dir())
        for name, path in files:
            if name.startswith("."):
                continue  # hidden files such as .DS_Store
            suffix = os.path.splitext(name)[1]
            if suffix.lower() not in IMAGE_SUFFIXES:
                message = f"{path}: not an image file (suffix {suffix or 'none'})"
                if skip_unreadable:
                    warnings.warn(f"skipping {message}", stacklevel=2)
                    continue
                raise DataError(message + "; remove it or pass --skip-unreadable")
            paths.append(Path(path))
            labels.append(len(names))
        names.append(folder.relative_to(root).as_posix())
    return paths, labels, names


def _check_class_sizes(labels: torch.Tensor, names: list[str], root: Path, min_images_per_class: int) -> None:
    counts = torch.bincount(labels, minlength=len(names)).tolist()
    for name, count in zip(names, counts, strict=True):
        if count < min_images_per_class:
            raise DataError(
                f"class {name!r} in {root} has {count} usable image(s); each class needs at least "
                f"{min_images_per_class} so that it forms same-class pairs"
            )


def load_image_folder(
    root: str | Path,
    preprocessing: dict,
    skip_unreadable: bool = False,
    min_images_per_class: int = 2,
    class_depth: int = 1,
) -> ImageSet:
    """Every image under root/<class>/ (or root/<group>/<class>/), decoded and resized as `preprocessing` says."""
    root = Path(root)
    listed, listed_labels, names = list_image_folder(root, class_depth, skip_unreadable)
    images, labels, paths = [], [], []
    for path, label in zip(listed, listed_labels, strict=True):
        try:
            tensor = prepare_image(path, preprocessing)  # (C, H, W) uint8
        except ImageError as error:
            if skip_unreadable:
                warnings.warn(f"skipping {error}", stacklevel=2)
                continue
            raise DataError(f"{error}; remove it or pass --skip-unreadable") from error
        images.append(tensor)
        labels.append(label)
        paths.append(str(path))
    label_tensor = torch.tensor(labels, dtype=torch.long)
    _check_class_sizes(label_tensor, names, root, min_images_per_class)
    return ImageSet(torch.stack(images), label_tensor, names, paths)


def stream_image_folder(
    root: str | Path,
    preprocessing: dict,
    cache_dir: str | Path,
    skip_unreadable: bool = False,
    min_images_per_class: int = 2,
    class_depth: int = 1,
    workers: int | None = None,
) -> ImageSet:
    """The same images as `load_image_folder`, in the same order, but decoded once into a uint8 cache
    on disk (`siamese.data.cache`) and read from it as needed; an unchanged folder reuses its cache at once."""
    root = Path(root)
    listed, listed_labels, names = list_image_folder(root, class_depth, skip_unreadable)
    if not listed:
        raise DataError(f"{root} has no image files in its class folders")
    try:
        cached = build_cache(listed, listed_labels, preprocessing, cache_dir, workers, skip_unreadable)
    except ImageError as error:
        raise DataError(f"{error}; remove it or pass --skip-unreadable") from error
    for _, message in cached.unreadable:
        if not skip_unreadable:  # a cache built with skipping, reused without: refuse as a fresh build would
            raise DataError(f"{message}; remove it or pass --skip-unreadable")
        warnings.warn(f"skipping {message}", stacklevel=2)
    unreadable = {path for path, _ in cached.unreadable}  # absolute paths, as the cache keeps them
    row_of = {path: row for row, path in enumerate(cached.paths)}
    absolute = (os.path.abspath(path) for path in listed)
    kept = [(path, label) for path, label in zip(absolute, listed_labels, strict=True) if path not in unreadable]
    rows = [row_of[path] for path, _ in kept]  # the listing's order, as in memory
    labels = torch.tensor([label for _, label in kept], dtype=torch.long)
    _check_class_sizes(labels, names, root, min_images_per_class)
    return ImageSet(MappedImages(cached, rows), labels, names, [path for path, _ in kept])


def _matching(patterns: list[str], candidates: list[str], what: str, available: list[str]) -> list[str]:
    """The candidates that any of the glob `patterns` matches; a clear error for a pattern matching none."""
    matched = []
    for pattern in patterns:
        hits = [candidate for candidate in candidates if fnmatch.fnmatchcase(candidate, pattern)]
        if not hits:
            shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
            raise DataError(f"{what} {pattern!r} is not in the data (it matches none of: {shown})")
        matched += [hit for hit in hits if hit not in matched]
    return matched


def split_classes(
    class_names: list[str],
    *,
    test_classes: list[str] | None = None,
    test_groups: list[str] | None = None,
    test_fraction: float = 0.25,
    val_classes: list[str] | None = None,
    val_groups: list[str] | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> tuple[list[str], list[str], list[str]]:
    """(train, validation, test) class names: three disjoint sets, the one place splits are decided.

    Named classes and groups accept glob patterns (`s3*`, `latin/*`). Without names, a seeded
    `test_fraction` of the units is held out for testing, then a seeded `val_fraction` of the
    rest for validation; the units are groups when the classes have two or more groups (so a
    held-out set never shares a group with training), classes otherwise. A fraction of 0 holds
    nothing out; any other fraction holds out at least one unit. At least two classes train.
    """
    names = list(class_names)
    groups = sorted({group for group in map(class_group, names) if group is not None})
    by_group = len(groups) >= 2
    for label, patterns in (("--test-groups", test_groups), ("--val-groups", val_groups)):
        if patterns and not groups:
            raise DataError(f"{label} needs nested folders (--class-depth 2: group/class/); these classes have none")

    def named(classes, class_groups, what) -> list[str]:
        chosen = _matching(classes or [], names, f"{what} class", names)
        group_hits = _matching(class_groups or [], groups, f"{what} group", groups)
        return chosen + [name for name in names if class_group(name) in group_hits and name not in chosen]

    def draw(remaining: list[str], fraction: float, draw_seed: int) -> list[str]:
        if fraction <= 0:
            return []
        units = sorted({class_group(name) for name in remaining}) if by_group else list(remaining)
        count = min(max(1, round(fraction * len(units))), len(units) - 1)
        if count < 1:
            raise DataError(f"holding out {fraction:.0%} needs at least 2 {'groups' if by_group else 'classes'}")
        generator = torch.Generator().manual_seed(draw_seed)
        picked = {units[index] for index in torch.randperm(len(units), generator=generator)[:count].tolist()}
        return [name for name in remaining if (class_group(name) if by_group else name) in picked]

    test = named(test_classes, test_groups, "test") if (test_classes or test_groups) else None
    validation = named(val_classes, val_groups, "validation") if (val_classes or val_groups) else None
    if test is not None and validation is not None:
        overlap = sorted(set(test) & set(validation))
        if overlap:
            raise DataError(f"classes named for both validation and test: {', '.join(overlap[:10])}")
    if test is None:
        test = draw([name for name in names if name not in (validation or [])], test_fraction, seed)
    if validation is None:
        validation = draw([name for name in names if name not in test], val_fraction, seed + 1)
    train = [name for name in names if name not in test and name not in validation]
    if len(train) < 2:
        raise DataError(
            f"at least two classes must remain for training; {len(test)} are held out for testing and "
            f"{len(validation)} for validation out of {len(names)}"
        )
    return train, sorted(validation), sorted(test)


def class_disjoint_split(
    image_set: ImageSet,
    test_classes: list[str] | tuple[str, ...] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[ImageSet, ImageSet]:
    """(train, test) where the test classes never appear in training (no validation set).

    Named `test_classes` (glob patterns allowed) are used exactly; otherwise a seeded
    `test_fraction` of the classes, at least one, leaving at least two for training.
    """
    if len(image_set.class_names) < 3 and not test_classes:
        raise DataError(f"a class-disjoint split needs at least 3 classes, got {len(image_set.class_names)}")
    _train, _validation, test = split_classes(
        image_set.class_names, test_classes=list(test_classes or []) or None, test_fraction=test_fraction,
        val_fraction=0.0, seed=seed,
    )  # fmt: skip
    return _take_classes(image_set, set(image_set.class_names) - set(test)), _take_classes(image_set, set(test))


def _take_classes(image_set: ImageSet, chosen: set[str]) -> ImageSet:
    indices = [index for index, name in enumerate(image_set.class_names) if name in chosen]
    return _relabel(image_set, torch.isin(image_set.labels, torch.tensor(indices, dtype=torch.long)))


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
    class_depth: int = 1,
    test_groups: list[str] | None = None,
    val_classes: list[str] | None = None,
    val_groups: list[str] | None = None,
    val_fraction: float = 0.0,
    cache_dir: str | Path | None = None,
) -> Splits:
    """A class folder split into training classes, validation classes and unseen test classes.

    `val_fraction` defaults to 0 here (no validation) for direct callers; training asks for one.
    With no test classes (`test_fraction=0`), the test set is empty and says so. With `cache_dir`,
    the images are decoded once into a cache there and streamed from it (`stream_image_folder`);
    the splits are the same either way.
    """
    if cache_dir is None:
        image_set = load_image_folder(root, preprocessing, skip_unreadable=skip_unreadable, class_depth=class_depth)
    else:
        image_set = stream_image_folder(
            root, preprocessing, cache_dir, skip_unreadable=skip_unreadable, class_depth=class_depth
        )
    train_names, validation_names, test_names = split_classes(
        image_set.class_names,
        test_classes=test_classes,
        test_groups=test_groups,
        test_fraction=test_fraction,
        val_classes=val_classes,
        val_groups=val_groups,
        val_fraction=val_fraction,
        seed=seed,
    )
    train = _take_classes(image_set, set(train_names))
    test = _take_classes(image_set, set(test_names))
    validation = _take_classes(image_set, set(validation_names)) if validation_names else None
    by_groups = len({class_group(name) for name in image_set.class_names} - {None}) >= 2
    if test_groups:
        how = " (the groups named by --test-groups)"
    elif test_classes:
        how = " (named by --test-classes)"
    elif by_groups:
        how = f" (a seeded {test_fraction:.0%} draw of whole groups, seed {seed})"
    else:
        how = f" (a seeded {test_fraction:.0%} draw, seed {seed})"
    description = {
        "name": name,
        "source": str(root),
        "classes": len(image_set.class_names),
        "train_size": len(train),
        "test_size": len(test),
        "train_classes": len(train.class_names),
        "test_classes": sorted(test.class_names),
        "test": ("whole classes never seen in training" + (split_note or how)) if test_names else "no test set",
    }
    if class_depth > 1:
        description["class_depth"] = class_depth
        description["test_groups"] = sorted({class_group(n) for n in test_names} - {None})
    if validation is not None:
        description["validation_size"] = len(validation)
        description["validation_classes"] = sorted(validation.class_names)
        description["validation"] = "whole classes held out of training and absent from the test set" + (
            " (whole groups)" if class_depth > 1 and not val_classes and (val_groups or by_groups) else ""
        )
    return Splits(train, test, dict(preprocessing), description, validation)


def load_att_faces(
    root: str | Path,
    preprocessing: dict | None = None,
    test_classes: list[str] | tuple[str, ...] = ATT_TEST_CLASSES,
    val_classes: list[str] | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    skip_unreadable: bool = False,
) -> Splits:
    """The AT&T faces (s1..s40): by default s31 to s40 are held out as unseen subjects."""
    note = " (the default: subjects s31 to s40)" if tuple(test_classes) == ATT_TEST_CLASSES else None
    return load_folder_splits(
        root,
        preprocessing or dict(FACES_PREPROCESSING),
        list(test_classes),
        name="att_faces",
        split_note=note,
        val_classes=val_classes,
        val_fraction=val_fraction,
        seed=seed,
        skip_unreadable=skip_unreadable,
    )
