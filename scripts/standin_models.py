"""Small untrained stand-in models with a real calibration, for app tests, benchmarks and screenshots.

    python scripts/standin_models.py /tmp/standins      # writes /tmp/standins/mnist and /tmp/standins/faces

The weights are random (a tiny convnet), so verdicts are not meaningful, but every field the app
reads is there: preprocessing, a threshold and distance histograms measured on real digits,
metrics.json and a model card. Never write these into pretrained/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from siamese.data.datasets import DIGITS_PREPROCESSING
from siamese.data.examples import balanced_indices, load_digits, load_faces
from siamese.evaluation.calibration import calibrate
from siamese.modeling.network import EmbeddingNet

FACES_PREPROCESSING = {"kind": "faces", "grayscale": True, "size": [56, 46], "mean": 0.5, "std": 0.25}


def calibration_from(model: EmbeddingNet, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """The library's own calibration (`siamese.evaluation.calibration.calibrate`) on embeddings of example images."""
    embeddings = model.encode(images)  # (N, D)
    return calibrate(embeddings, labels, measured_on="stand-in: pairs of example images")


def make_standin(folder: str | Path, kind: str = "digits", seed: int = 0) -> Path:
    """Write an untrained, calibrated stand-in model folder for `kind` ("digits" or "faces")."""
    torch.manual_seed(seed)
    if kind == "digits":
        preprocessing = dict(DIGITS_PREPROCESSING)
        examples = load_digits()
    elif kind == "faces":
        preprocessing = dict(FACES_PREPROCESSING)
        examples = load_faces(download=False) or load_digits()
    else:
        raise ValueError(f"kind must be 'digits' or 'faces', got {kind!r}")
    arguments = {
        "architecture": "convnet",
        "embedding_dim": 16,
        "image_size": tuple(preprocessing["size"]),
        "widths": (8, 16),
        "preprocessing": preprocessing,
        "training": {"dataset": {"name": f"stand-in ({kind})", "source": "untrained random weights"}},
    }
    untrained = EmbeddingNet(**arguments).eval()
    chosen = balanced_indices(examples.labels, 300, seed=seed)
    # config.json records the constructor arguments, so the calibration goes in through a second build.
    model = EmbeddingNet(
        **arguments, calibration=calibration_from(untrained, examples.images[chosen], examples.labels[chosen])
    )
    model.load_state_dict(untrained.state_dict())

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    metrics = {
        "task": kind,
        "dataset": {"name": f"stand-in ({kind})", "source": examples.source},
        "test": {"roc_auc": model.calibration["validation"]["roc_auc"], "threshold": model.calibration["threshold"]},
        "distance_histogram": model.calibration["distance_histogram"],
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "README.md").write_text(f"# Stand-in {kind} model\n\nUntrained weights for testing the app only.\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder that receives mnist/ and faces/")
    args = parser.parse_args()
    for name, kind in (("mnist", "digits"), ("faces", "faces")):
        print(make_standin(Path(args.out) / name, kind))


if __name__ == "__main__":
    main()
