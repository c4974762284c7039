"""The example images a model is compared against: its domain's reference set, and the out-of-distribution
caution measured on it."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from siamese.data import examples as example_data
from siamese.evaluation.calibration import nearest_reference_distances, out_of_distribution_limit
from siamese.serving.images import is_face_model, model_kind
from siamese.serving.models import ModelRegistry

# Reference sample for the out-of-distribution caution (balanced over classes, from the model's examples).
OUT_OF_DISTRIBUTION_REFERENCES = 500


def unseen_face_classes(models: Iterable) -> list[str] | None:
    """The people every loaded face model held out as test subjects: examples show only them."""
    held_out = None
    for model in models:
        if model_kind(model) != "faces":
            continue
        dataset = model.training_info.get("dataset") or {}
        test_classes = set(dataset.get("test_classes") or [])
        held_out = test_classes if held_out is None else held_out & test_classes
    return sorted(held_out) if held_out else None


@dataclass(frozen=True)
class ExampleSources:
    """Where example images come from: MNIST and face folders (None: the defaults of siamese.data.examples),
    whether faces may be downloaded when not cached, and a face folder to fall back on when neither is there."""

    mnist_root: str | None = None
    faces_root: str | None = None
    download_faces: bool = False
    fallback_faces_root: str | None = None


@dataclass
class ReferenceImages:
    """The example images of each domain: digits always, faces where they can be had, showing only people no
    model in `registry` trained on."""

    registry: ModelRegistry
    sources: ExampleSources = ExampleSources()

    def for_kind(self, kind: str, download: bool | None = None) -> example_data.ExampleSet | None:
        """The example set for a model kind ("digits", "faces"); None for other kinds and for faces that cannot be
        had."""
        if kind == "digits":
            return example_data.load_digits(self.sources.mnist_root)
        if kind == "faces":
            download = self.sources.download_faces if download is None else download
            faces = example_data.load_faces(self.sources.faces_root, download, self.sources.fallback_faces_root)
            held_out = unseen_face_classes(self.registry.models.values())
            return None if faces is None else example_data.restrict_classes(faces, held_out)
        return None


@dataclass
class OutOfDistributionCheck:
    """Embeddings of a model's own example images, and the nearest-reference distance beyond which an input
    looks unlike them (`siamese.evaluation.calibration.out_of_distribution_limit`)."""

    references: torch.Tensor
    limit: float
    description: str

    @classmethod
    def measure(cls, model, examples) -> OutOfDistributionCheck | None:
        """The check over a balanced sample of `examples` (those where a face is found, for a model that finds
        faces); None with fewer than two example images, and for a model of aligned faces: it meets people it never
        saw by design, and a stranger lies far from every example face however well the photo suits the model
        (with the twelve example faces the app ships, every real photo was flagged). Its gate is the face step:
        a photo with no face found is refused."""
        if examples is None or len(examples) < 2 or is_face_model(model):
            return None
        chosen = example_data.balanced_indices(examples.labels, OUT_OF_DISTRIBUTION_REFERENCES)
        references, _ = model.encode(examples.images[chosen], skip_no_face=True)  # (R, D)
        if references.shape[0] < 2:
            return None
        return cls(references, out_of_distribution_limit(references), f"{len(references)} example {examples.kind}")

    def cautions(self, embeddings: torch.Tensor, sides: list[str]) -> list[str]:
        """A caution for each input embedding (M, D) that lies beyond the limit, naming its side."""
        nearest = nearest_reference_distances(embeddings, self.references)  # (M,)
        return [
            f"**Caution:** {side} looks unlike the images this model was made for. Its nearest of "
            f"{self.description} lies at distance {distance:.3g}, beyond {self.limit:.3g}: the distance within "
            f"which 99% of those examples find their nearest neighbour among the others (each left out in turn). "
            "Treat the answer with suspicion."
            for side, distance in zip(sides, nearest.tolist(), strict=True)
            if distance > self.limit
        ]


class OutOfDistributionChecks:
    """Each model's check, measured once on first use and kept."""

    def __init__(self, references: ReferenceImages):
        self.references = references
        self._checks: dict[str, OutOfDistributionCheck | None] = {}
        self._lock = threading.Lock()

    def get(self, model_name: str, model) -> OutOfDistributionCheck | None:
        """The model's check; None where its domain has no example images."""
        with self._lock:
            if model_name in self._checks:
                return self._checks[model_name]
        check = OutOfDistributionCheck.measure(model, self.references.for_kind(model_kind(model)))
        with self._lock:
            self._checks[model_name] = check
        return check

    def cautions(self, model_name: str, model, embeddings: torch.Tensor, sides: list[str]) -> list[str]:
        """The cautions for input embeddings (M, D), one per side beyond the model's limit."""
        check = self.get(model_name, model)
        return [] if check is None else check.cautions(embeddings, sides)
