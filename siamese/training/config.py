"""The one training configuration: a dataclass and named presets.

A preset fills in a coherent recipe (architecture, loss, sampler, schedule, augmentation);
any field given explicitly (a command-line flag) overrides it. The final config is saved with
the weights, so a model folder always says how it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from siamese.modeling.backbones import parse_backbone
from siamese.modeling.config import parts_supported
from siamese.modeling.face_port import PRETRAINED_ARCHITECTURES
from siamese.training.datasets import DATASETS

# Each preset sets only the fields it cares about; the rest keep the dataclass defaults.
PRESETS: dict[str, dict] = {
    # The MNIST tutorial as published: its network, all-pairs contrastive loss, batch 32, Adam 1e-3.
    "tutorial": {
        "architecture": "tutorial",
        "embedding_dim": 50,
        "loss": "contrastive",
        "margin": 1.0,
        "sampler": "shuffle",
        "batch_size": 32,
        "epochs": 5,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "constant",
        "augment": "none",
    },
    # Digits in about a minute of CPU time: a small BN conv net on class-balanced batches.
    "fast": {
        "architecture": "convnet",
        "widths": [32, 64, 128],
        "embedding_dim": 64,
        "normalize": True,
        "loss": "contrastive",
        "margin": 0.5,
        "sampler": "balanced",
        "classes_per_batch": 10,
        "samples_per_class": 16,
        "epochs": 12,
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 1e-4,
        "schedule": "onecycle",
        "augment": "digits",
    },
    # The one-shot faces article: its small reflection-padded net on 100x100, balanced pairs, margin 2.
    "article": {
        "architecture": "article",
        "embedding_dim": 5,
        "image_size": [100, 100],
        "dropout": 0.2,
        "loss": "pair",
        "margin": 2.0,
        "sampler": "pairs",
        "batch_size": 64,
        "pairs_per_epoch": 0,
        "epochs": 100,
        "optimizer": "adam",
        "lr": 5e-4,
        "weight_decay": 0.0,
        "schedule": "constant",
        "augment": "none",
    },
    # Our default for faces and image folders: a BN conv net with unit-length embeddings trained
    # with a large-margin cosine loss (CosFace) on class-balanced, augmented batches. The embedding
    # is part-based (the whole face plus 4 horizontal stripes, 32 dimensions each): on the four
    # 10-subject AT&T folds it lifted one-shot accuracy and cut the EER over one 64-d embedding.
    "faces": {
        "architecture": "convnet",
        "widths": [32, 64, 128],
        "embedding_dim": 160,
        "parts": 4,
        "image_size": [56, 46],
        "normalize": True,
        "loss": "cosface",
        "margin": 0.35,
        "sampler": "balanced",
        "classes_per_batch": 15,
        "samples_per_class": 4,
        "epochs": 100,
        "optimizer": "adamw",
        "lr": 3e-3,
        "weight_decay": 5e-4,
        "schedule": "onecycle",
        "augment": "faces",
        # Faces are close to mirror-symmetric, so a mirrored face is still the same person.
        "horizontal_flip": True,
    },
}

# The tutorial's recipe on class-balanced batches (8 classes x 4 digits = 32): every batch
# holds positive pairs, which makes the first epoch reliably better than plain shuffling.
PRESETS["mnist"] = {**PRESETS["tutorial"], "sampler": "balanced", "classes_per_batch": 8, "samples_per_class": 4}
# The best digits embeddings within ten CPU minutes: the fast recipe, trained five times longer.
PRESETS["best"] = {**PRESETS["fast"], "epochs": 60}
# Any image folder: the faces recipe, but the input size comes from the data (see
# `siamese.data.folders.infer_image_size`) and no mirror images, since a mirrored glyph or logo can be
# another class.
PRESETS["folder"] = {key: value for key, value in PRESETS["faces"].items() if key != "image_size"}
PRESETS["folder"]["horizontal_flip"] = False

# dlib's ResNet face descriptor, ported (siamese.modeling.face_port), on the 150x150 colour chips of the faces it
# finds. With no epochs this is dlib's network as published, calibrated on validation; photos where no face is
# found are named and left out.
PRESETS["faces_port"] = {
    "architecture": "dlib_resnet",
    "pretrained": True,
    "embedding_dim": 128,
    "normalize": False,
    "parts": 0,
    "grayscale": False,
    "skip_unreadable": True,
    # Calibrated in full precision, as encode runs it.
    "precision": "fp32",
    "epochs": 0,
    "loss": "contrastive",
    "margin": 0.8,
    "sampler": "balanced",
    "classes_per_batch": 8,
    "samples_per_class": 4,
    "optimizer": "adam",
    "lr": 1e-5,
    "weight_decay": 0.0,
    "schedule": "constant",
    "augment": "none",
    "horizontal_flip": True,
}
# Siamese fine-tuning from the port: the same network and chips, a few epochs of the contrastive loss at a small
# learning rate, so that the face knowledge of dlib's training is kept.
PRESETS["faces_finetune"] = {**PRESETS["faces_port"], "epochs": 3, "lr": 3e-6}

STREAM_CHOICES = ("auto", "always", "never")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Saved in the checkpoint and the model folder."""

    # Data
    dataset: str = "mnist"
    data_root: str | None = None
    download: bool = False
    class_depth: int = 1
    test_classes: list[str] | None = None
    test_groups: list[str] | None = None
    test_fraction: float = 0.25
    val_classes: list[str] | None = None
    val_groups: list[str] | None = None
    val_fraction: float = 0.15
    extra_validation: str | None = None
    skip_unreadable: bool = False
    # Folders: "auto" streams from a decoded-image cache on disk when the decoded images would be
    # large (see siamese.training.datasets.should_stream), "always" or "never" force the choice.
    stream: str = "auto"
    cache_dir: str | None = None
    image_size: list[int] | None = None
    grayscale: bool = True
    # Recipe
    preset: str | None = None
    architecture: str = "tutorial"
    backbone: str | None = None
    pretrained: bool = False
    embedding_dim: int = 50
    widths: list[int] | None = None
    dropout: float = 0.0
    normalize: bool = False
    pooling: str = "avg"
    parts: int = 0
    loss: str = "contrastive"
    margin: float = 1.0
    sampler: str = "shuffle"
    batch_size: int = 32
    classes_per_batch: int = 10
    samples_per_class: int = 8
    pairs_per_epoch: int = 0
    epochs: int = 5
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    augment: str = "none"
    horizontal_flip: bool = False
    # Run
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    eval_every: int = 1
    knn_k: int = 5
    one_shot_draws: int = 200
    out: str = "runs/model"
    resume: bool = False
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def build_config(overrides: dict | None = None) -> TrainConfig:
    """Dataclass defaults, then the preset (named, or the data set's default), then `overrides`.

    Keys in `overrides` whose value is None are treated as not given.
    """
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    known = {field.name for field in fields(TrainConfig)}
    unknown = set(given) - known
    if unknown:
        raise ValueError(f"unknown config fields: {sorted(unknown)}")
    dataset = given.get("dataset", TrainConfig.dataset)
    spec = DATASETS.get(dataset)
    if given.get("stream", "auto") not in STREAM_CHOICES:
        raise ValueError(f"stream must be one of {STREAM_CHOICES}, got {given['stream']!r}")
    preset = given.get("preset") or spec.default_preset
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    values = {**PRESETS[preset], **given, "preset": preset}
    if given.get("backbone"):
        parse_backbone(given["backbone"])  # a clear error for a malformed name
        # A timm backbone replaces the preset's network; its weights expect colour input.
        values.update(architecture="timm", parts=0, pooling="avg", normalize=True)
        if "grayscale" not in given:
            values["grayscale"] = False
    elif given.get("pretrained") and values.get("architecture") not in PRETRAINED_ARCHITECTURES:
        raise ValueError(
            "--pretrained needs --backbone timm:<name> or --architecture dlib_resnet: the other built-in networks have "
            "no pretrained weights"
        )
    config = TrainConfig(**values)
    if config.parts < 0:
        raise ValueError(f"--parts must be 0 (one whole-image embedding) or more, got {config.parts}")
    if config.parts and not parts_supported(config.architecture, config.pooling, config.normalize):
        raise ValueError(
            f"--parts {config.parts} (part embeddings) needs --architecture convnet, --pooling avg and --normalize "
            f"true, got {config.architecture}, {config.pooling} and {config.normalize}; add --parts 0 for one "
            f"whole-image embedding"
        )
    if config.parts and config.embedding_dim % (config.parts + 1):
        raise ValueError(
            f"--embedding-dim {config.embedding_dim} must split into --parts + 1 = {config.parts + 1} equal chunks "
            f"(one for the whole image, one per stripe); pick a multiple of {config.parts + 1} or --parts 0"
        )
    return config
