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

import numpy as np
import torch

from siamese.data import DIGITS_PREPROCESSING
from siamese.distances import pairwise_distances
from siamese.evaluation import embed
from siamese.examples import balanced_indices, fit_to_model, load_digits, load_faces
from siamese.models import EmbeddingNet

FACES_PREPROCESSING = {"kind": "faces", "grayscale": True, "size": [56, 46], "mean": 0.5, "std": 0.25}


def calibration_from(model: EmbeddingNet, images: torch.Tensor, labels: torch.Tensor, bins: int = 30) -> dict:
    """Threshold at best pair accuracy, equal-error threshold, and genuine/impostor distance densities."""
    embeddings = embed(model, images, model.preprocessing)  # (N, D)
    distances = pairwise_distances(embeddings).numpy()  # (N, N)
    upper = np.triu_indices(len(labels), k=1)
    same = (labels[:, None] == labels[None, :]).numpy()[upper]  # (P,)
    values = distances[upper]  # (P,)
    genuine, impostor = values[same], values[~same]
    candidates = np.quantile(values, np.linspace(0.01, 0.99, 99))
    # Balanced accuracy, so the many impostor pairs do not push the threshold to zero.
    accuracies = [((genuine <= cut).mean() + (impostor > cut).mean()) / 2 for cut in candidates]
    best = int(np.argmax(accuracies))
    errors = [abs((genuine > cut).mean() - (impostor <= cut).mean()) for cut in candidates]
    edges = np.linspace(0.0, float(values.max()) * 1.02, bins + 1)
    return {
        "distance": "euclidean",
        "threshold": float(candidates[best]),
        "threshold_eer": float(candidates[int(np.argmin(errors))]),
        "best_accuracy": float(accuracies[best]),
        "measured_on": "stand-in: pairs of example images",
        "distance_histogram": {
            "edges": edges.tolist(),
            "genuine": np.histogram(genuine, edges, density=True)[0].tolist(),
            "impostor": np.histogram(impostor, edges, density=True)[0].tolist(),
        },
    }


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
    images = fit_to_model(examples.images[chosen], preprocessing)  # (300, 1, H, W)
    # config.json records the constructor arguments, so the calibration goes in through a second build.
    model = EmbeddingNet(**arguments, calibration=calibration_from(untrained, images, examples.labels[chosen]))
    model.load_state_dict(untrained.state_dict())

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    metrics = {
        "task": kind,
        "dataset": {"name": f"stand-in ({kind})", "source": examples.source},
        "test": {"best_accuracy": model.calibration["best_accuracy"], "threshold": model.calibration["threshold"]},
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
