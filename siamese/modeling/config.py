"""What `config.json` holds, as typed dataclasses: the network, its preprocessing and its calibration.

Reading is strict: an unknown or misspelled key is an error that names the key and the nearest
known one, because a silently ignored `normalise` or `preprocesing` gives a model that loads and
then answers wrongly.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields

PREPROCESSING_KINDS = ("digits", "faces", "folder", "aligned_faces")
# Calibration keys that earlier versions of this project wrote (thresholds fitted on test pairs):
# accepted so that those models still load, and dropped.
LEGACY_CALIBRATION_KEYS = ("threshold_eer", "threshold_best_accuracy", "best_accuracy", "eer")


class ConfigError(ValueError):
    """A config.json that does not describe a model; the message names the key and what was expected."""


def _check_keys(values: dict, known: list[str], where: str) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(values).__name__}")
    unknown = sorted(set(values) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"{where} has unknown key(s) {', '.join(hints)}; known keys: {', '.join(known)}")


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded image becomes the network's input: size, channels, and (x - mean) / std scaling."""

    kind: str = "folder"
    grayscale: bool = True
    size: tuple[int, int] = (28, 28)
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0

    @classmethod
    def from_dict(cls, values: dict, where: str = "preprocessing") -> Preprocessing:
        _check_keys(values, [item.name for item in fields(cls)], where)
        kind = values.get("kind", cls.kind)
        if kind not in PREPROCESSING_KINDS:
            raise ConfigError(f"{where}.kind must be one of {PREPROCESSING_KINDS}, got {kind!r}")
        size = values.get("size", cls.size)
        if not (isinstance(size, list | tuple) and len(size) == 2 and all(int(side) > 0 for side in size)):
            raise ConfigError(f"{where}.size must be [height, width], got {size!r}")

        def scale(value):
            if isinstance(value, list | tuple):
                return tuple(float(item) for item in value)
            return float(value)

        std = scale(values.get("std", cls.std))
        stds = std if isinstance(std, tuple) else (std,)
        if not stds or min(stds) <= 0:
            raise ConfigError(f"{where}.std must be positive, got {values.get('std')!r}")
        return cls(
            kind=kind,
            grayscale=bool(values.get("grayscale", cls.grayscale)),
            size=(int(size[0]), int(size[1])),
            mean=scale(values.get("mean", cls.mean)),
            std=std,
        )

    def to_dict(self) -> dict:
        values = asdict(self)
        values["size"] = list(self.size)
        for key in ("mean", "std"):
            if isinstance(values[key], tuple):
                values[key] = list(values[key])
        return values


@dataclass(frozen=True)
class Calibration:
    """The verdict thresholds chosen on validation data, and what they were measured to do.

    `threshold`: pairs at or below it are "same". `threshold_strict`: at most
    `target_false_accept_rate` false accepts on validation. `gallery_threshold` and
    `caution_margin`: the gallery's "no match" distance and near-tie margin. `validation` and
    `test` hold the measured rates; `distance_histogram` the validation distance densities.
    """

    threshold: float | None = None
    threshold_strict: float | None = None
    target_false_accept_rate: float | None = None
    gallery_threshold: float | None = None
    caution_margin: float | None = None
    caution_share: float | None = None
    distance: str = "euclidean"
    rule: str = "same when distance <= threshold"
    measured_on: str | None = None
    validation: dict | None = None
    test: dict | None = None
    distance_histogram: dict | None = None

    @classmethod
    def from_dict(cls, values: dict | None, where: str = "calibration") -> Calibration:
        values = {key: value for key, value in (values or {}).items() if key not in LEGACY_CALIBRATION_KEYS}
        _check_keys(values, [item.name for item in fields(cls)], where)
        if values.get("distance", "euclidean") != "euclidean":
            raise ConfigError(f"{where}.distance must be 'euclidean', got {values['distance']!r}")
        for key in ("threshold", "threshold_strict", "gallery_threshold", "caution_margin"):
            value = values.get(key)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"{where}.{key} must be a non-negative number, got {value!r}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


def parts_supported(architecture: str, pooling: str, normalize: bool) -> bool:
    """Part embeddings (the whole feature map plus horizontal stripes, each unit length) exist only here."""
    return architecture == "convnet" and pooling == "avg" and normalize


# The network's own fields; every one is an argument of `EmbeddingNet` (a test keeps the two in step).
NETWORK_FIELDS = (
    "architecture",
    "embedding_dim",
    "in_channels",
    "image_size",
    "widths",
    "dropout",
    "normalize",
    "pooling",
    "parts",
    "backbone",
)


@dataclass(frozen=True)
class ModelConfig:
    """Everything config.json holds: the network's shape, its preprocessing, calibration and provenance."""

    architecture: str = "tutorial"
    embedding_dim: int = 50
    in_channels: int = 1
    image_size: tuple[int, int] = (28, 28)
    widths: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.0
    normalize: bool = False
    pooling: str = "avg"
    parts: int = 0
    backbone: str | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    calibration: Calibration = field(default_factory=Calibration)
    training: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict, where: str = "config.json") -> ModelConfig:
        """A strict reading: unknown keys, a missing architecture or a wrong type are ConfigErrors."""
        _check_keys(values, [item.name for item in fields(cls)], where)
        if "architecture" not in values:
            raise ConfigError(f"{where} has no 'architecture' key, so it does not describe a network")
        network = {key: values[key] for key in NETWORK_FIELDS if key in values}
        for key in ("image_size", "widths"):
            if key in network:
                if not isinstance(network[key], list | tuple):
                    raise ConfigError(f"{where}: {key} must be a list of integers, got {network[key]!r}")
                network[key] = tuple(int(item) for item in network[key])
        training = values.get("training") or {}
        if not isinstance(training, dict):
            raise ConfigError(f"{where}: training must be a JSON object, got {type(training).__name__}")
        return cls(
            **network,
            preprocessing=Preprocessing.from_dict(values.get("preprocessing") or {}, f"{where} preprocessing"),
            calibration=Calibration.from_dict(values.get("calibration"), f"{where} calibration"),
            training=training,
        )

    def network_arguments(self) -> dict:
        """The keyword arguments that build the network (`EmbeddingNet(**arguments)`)."""
        return {key: getattr(self, key) for key in NETWORK_FIELDS}

    def to_dict(self) -> dict:
        values = {key: getattr(self, key) for key in NETWORK_FIELDS}
        values["image_size"] = list(self.image_size)
        values["widths"] = list(self.widths)
        values["preprocessing"] = self.preprocessing.to_dict()
        values["calibration"] = self.calibration.to_dict()
        values["training"] = dict(self.training)
        return values
