"""Convert dlib's `dlib_face_recognition_resnet_model_v1.dat` into a safetensors file for FaceResNet."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from .resnet import DLIB_RGB_MEANS, FaceResNet, load_dlib_weights

WEIGHTS_FILE = "model.safetensors"


def convert_dlib_resnet(dat_path: str | os.PathLike, out_folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Write `out_folder/model.safetensors` with FaceResNet's weights read from dlib's file; return the state dict.

    The file appears whole or not at all: it is written beside its final name, then renamed over it.
    """
    dat_path = Path(dat_path)
    model = load_dlib_weights(FaceResNet(), dat_path)
    state = {name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()}
    metadata = {
        "format": "pt",
        "source": dat_path.name,
        "source_sha256": hashlib.sha256(dat_path.read_bytes()).hexdigest(),
        # How the network's input is made from a 150x150 RGB chip, since the weights alone do not say.
        "input": "(rgb_pixel - rgb_means) / 256, (B, 3, 150, 150)",
        "rgb_means": ",".join(repr(mean) for mean in DLIB_RGB_MEANS),
    }
    out_folder = Path(out_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    final = out_folder / WEIGHTS_FILE
    temporary = out_folder / f".{WEIGHTS_FILE}.tmp"
    try:
        save_file(state, str(temporary), metadata=metadata)
        os.chmod(temporary, 0o644)  # safetensors creates its files readable by the owner only
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return state
