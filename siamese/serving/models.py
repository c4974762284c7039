"""The models a server offers: named specs, loaded on first use, and the thresholds their answers use."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from siamese.evaluation.calibration import stored_gallery_threshold
from siamese.modeling.files import ModelLoadError
from siamese.modeling.pretrained import load_model, read_metrics
from siamese.serving.messages import ModelChoiceError


@dataclass
class ModelSpec:
    """A model the app offers: a display name and a local folder or Hub repo id (optionally `repo@revision`)."""

    name: str
    source: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        source, _, revision = text.strip().partition("@")
        name = Path(source).name if Path(source).is_dir() else source
        return cls(name=name, source=source, revision=revision or None)

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()


class ModelRegistry:
    """Loads models on first use (local folders at start-up, so a broken one is reported at once)."""

    def __init__(self, specs: list[ModelSpec]):
        self.specs = {spec.name: spec for spec in specs}
        self.models: dict[str, torch.nn.Module] = {}
        self.metrics: dict[str, dict | None] = {}
        self.notes: list[str] = []
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def load_local(self, missing: dict[str, Path] | None = None) -> None:
        """Load every local model now; drop (with a note) those that fail, and note the `missing` ones."""
        for name, folder in (missing or {}).items():
            self.notes.append(f"Model `{name}` is not available: `{folder}` does not exist (not trained yet?).")
        for spec in list(self.specs.values()):
            if spec.is_local:
                try:
                    self.get(spec.name)
                except (ModelChoiceError, ModelLoadError) as error:
                    del self.specs[spec.name]
                    self.notes.append(f"Model `{spec.name}` was skipped: {error}")

    def get(self, name: str | None) -> torch.nn.Module:
        """The model called `name`, loaded once; a ModelChoiceError for none or an unknown name, a ModelLoadError
        when it cannot be loaded."""
        if not name:
            raise ModelChoiceError("Pick a model first.")
        if name not in self.specs:
            raise ModelChoiceError(f"Unknown model {name!r}; the app offers {', '.join(self.specs) or 'none'}.")
        with self._lock:
            if name not in self.models:
                spec = self.specs[name]
                model = load_model(spec.source, revision=spec.revision, device="cpu")
                try:
                    self.metrics[name] = read_metrics(spec.source, revision=spec.revision)
                except Exception:  # noqa: BLE001 - metrics are optional decoration
                    self.metrics[name] = None
                self.models[name] = model.eval()
            return self.models[name]


def pair_threshold(model) -> float | None:
    """The pair threshold, chosen on validation data (None for an uncalibrated model)."""
    value = model.calibration.get("threshold") if model.calibration else None
    return float(value) if value else None


def gallery_thresholds(model) -> tuple[float | None, float | None]:
    """The gallery's "no match" distance and caution margin, both chosen on validation galleries."""
    calibration = model.calibration or {}
    threshold = stored_gallery_threshold(calibration)
    return (float(threshold) if threshold else None), calibration.get("caution_margin")
