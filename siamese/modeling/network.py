"""Embedding networks: one module maps an image batch to an embedding batch.

A Siamese pair is the same module applied to both images, so there is no two-input model here.
"""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from siamese.distances import paired_distances, pairwise_distances
from siamese.evaluation.calibration import verdict
from siamese.modeling.backbones import create_backbone
from siamese.modeling.config import NETWORK_FIELDS, ModelConfig
from siamese.modeling.encode import encode_images
from siamese.modeling.files import CONFIG_FILE, ModelLoadError, load_weights, model_folder, read_model_config

ARCHITECTURES = ("tutorial", "article", "convnet", "timm")


def tutorial_backbone(in_channels: int) -> nn.Sequential:
    """The MNIST tutorial's feature extractor: three conv/ReLU/max-pool stages (64, 128, 256)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(128, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def tutorial_neck(flat_features: int, embedding_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(flat_features, 1024),
        nn.ReLU(),
        nn.Linear(1024, 256),
        nn.ReLU(),
        nn.Linear(256, embedding_dim),
    )


def article_backbone(in_channels: int, dropout: float) -> nn.Sequential:
    """The face article's sister network: reflection-padded 3x3 convs (4, 8, 8), ReLU, BN, dropout."""
    layers: list[nn.Module] = []
    channels = in_channels
    for width in (4, 8, 8):
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, width, kernel_size=3),
            nn.ReLU(),
            nn.BatchNorm2d(width),
            nn.Dropout2d(p=dropout),
        ]
        channels = width
    return nn.Sequential(*layers)


def article_neck(flat_features: int, embedding_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(flat_features, 500),
        nn.ReLU(),
        nn.Linear(500, 500),
        nn.ReLU(),
        nn.Linear(500, embedding_dim),
    )


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def convnet_backbone(in_channels: int, widths: tuple[int, ...], pooling: str = "avg") -> nn.Sequential:
    """Our default: per stage two 3x3 conv/BN/ReLU blocks then a 2x2 max-pool.

    `pooling="avg"` ends in a global average pool (position-free, for digits); "flatten" keeps the
    final feature map's layout, which matters for aligned images such as faces.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        layers += [conv_block(channels, width), conv_block(width, width), nn.MaxPool2d(2)]
        channels = width
    if pooling == "avg":
        layers.append(nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers)


def convnet_neck(flat_features: int, embedding_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat_features, embedding_dim))


def stripe_matrix(height: int, parts: int) -> torch.Tensor:
    """(parts, height) weights averaging the rows of each stripe as adaptive average pooling splits them:
    stripe i covers rows floor(i * height / parts) to ceil((i + 1) * height / parts) - 1."""
    weights = torch.zeros(parts, height)
    for stripe in range(parts):
        start = (stripe * height) // parts
        end = -((-(stripe + 1) * height) // parts)  # ceil
        weights[stripe, start:end] = 1.0 / (end - start)
    return weights


class PartsNeck(nn.Module):
    """One embedding of the whole feature map and one of each of `parts` horizontal stripes.

    The part-based idea of person re-identification (Sun et al., 2018, "PCB"): each stripe of a
    face (hair, eyes, nose, mouth, chin) must tell the training identities apart on its own, so
    the network cannot lean on one salient cue such as glasses, and it generalises better to
    people it never saw. Each chunk is unit length; the concatenation is scaled to unit length.
    """

    def __init__(
        self, channels: int, parts: int, embedding_dim: int, dropout: float, feature_height: int | None = None
    ):
        super().__init__()
        chunks = parts + 1
        if embedding_dim % chunks:
            raise ValueError(f"embedding_dim ({embedding_dim}) must divide into parts + 1 = {chunks} equal chunks")
        self.parts = parts
        self.dropout = nn.Dropout(dropout)
        # One linear map per chunk, applied together as a batched product.
        self.weight = nn.Parameter(torch.randn(chunks, channels, embedding_dim // chunks) / channels**0.5)
        self.bias = nn.Parameter(torch.zeros(chunks, embedding_dim // chunks))
        # Stripe pooling as a fixed (P, H) averaging matrix: the same numbers as adaptive average
        # pooling, in a form every exporter (ONNX too) supports for any height. Not saved: it follows
        # from the shape alone.
        self.feature_height = feature_height
        if feature_height is not None:
            self.register_buffer("stripe_weights", stripe_matrix(feature_height, parts), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        whole = features.mean(dim=(2, 3)).unsqueeze(2)  # (B, C, 1)
        if self.feature_height == features.shape[2]:
            rows = features.mean(dim=3)  # (B, C, H)
            stripes = torch.einsum("bch,ph->bcp", rows, self.stripe_weights.to(rows.dtype))  # (B, C, P)
        else:
            stripes = nn.functional.adaptive_avg_pool2d(features, (self.parts, 1)).flatten(2)  # (B, C, P)
        pooled = self.dropout(torch.cat([whole, stripes], dim=2))  # (B, C, P + 1)
        chunks = torch.einsum("bcp,pcd->bpd", pooled, self.weight) + self.bias  # (B, P + 1, d)
        chunks = nn.functional.normalize(chunks.float(), dim=2)  # (B, P + 1, d), each unit length
        return chunks.flatten(1) / (self.parts + 1) ** 0.5  # (B, D), unit length


class EmbeddingNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="siamese-similarity",
    tags=["siamese-network", "metric-learning", "image-similarity"],
    pipeline_tag="image-feature-extraction",
    license="mit",
):
    """Maps images (B, C, H, W) to embeddings (B, embedding_dim).

    Every constructor argument is plain JSON, so `save_pretrained` writes it to `config.json`
    and `from_pretrained` rebuilds the same network. `preprocessing` says how raw images become
    the input tensor; `calibration` holds the verification threshold measured after training;
    `training` records what the weights were trained on. None of the three changes the network.
    """

    def __init__(
        self,
        architecture: str = "tutorial",
        embedding_dim: int = 50,
        in_channels: int = 1,
        image_size: tuple[int, int] | list[int] = (28, 28),
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        dropout: float = 0.0,
        normalize: bool = False,
        pooling: str = "avg",
        parts: int = 0,
        backbone: str | None = None,
        preprocessing: dict | None = None,
        calibration: dict | None = None,
        training: dict | None = None,
    ):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if embedding_dim < 1 or in_channels < 1:
            raise ValueError(f"embedding_dim and in_channels must be positive, got {embedding_dim}, {in_channels}")
        self.architecture = architecture
        self.embedding_dim = int(embedding_dim)
        self.in_channels = int(in_channels)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.widths = tuple(int(width) for width in widths)
        self.dropout = float(dropout)
        self.normalize = bool(normalize)
        if pooling not in ("avg", "flatten"):
            raise ValueError(f"pooling must be avg or flatten, got {pooling!r}")
        self.pooling = pooling
        self.parts = int(parts)
        if self.parts < 0 or (self.parts and (architecture != "convnet" or pooling != "avg" or not normalize)):
            raise ValueError(
                f"parts ({parts}) needs the convnet architecture with avg pooling and normalize=True, "
                f"got {architecture}, {pooling}, normalize={normalize}"
            )
        if (architecture == "timm") != bool(backbone):
            raise ValueError(f"architecture 'timm' and a backbone name go together, got {architecture!r}, {backbone!r}")
        self.backbone_name = backbone
        self.preprocessing = dict(preprocessing or {})
        self.calibration = dict(calibration or {})
        self.training_info = dict(training or {})

        if architecture == "tutorial":
            self.backbone = tutorial_backbone(self.in_channels)
        elif architecture == "timm":
            self.backbone = create_backbone(backbone, self.in_channels)
        elif architecture == "article":
            self.backbone = article_backbone(self.in_channels, self.dropout)
        else:
            # Part embeddings pool the final feature map themselves, so the backbone keeps it whole.
            backbone_pooling = "flatten" if self.parts else self.pooling
            self.backbone = convnet_backbone(self.in_channels, self.widths, backbone_pooling)
        flat_features = self.backbone.num_features if architecture == "timm" else self._flat_features()
        if architecture == "tutorial":
            self.neck = tutorial_neck(flat_features, self.embedding_dim)
        elif architecture == "timm":
            self.neck = convnet_neck(flat_features, self.embedding_dim, self.dropout)
        elif architecture == "article":
            self.neck = article_neck(flat_features, self.embedding_dim)
        elif self.parts:
            feature_height = self._feature_shape()[1]
            self.neck = PartsNeck(self.widths[-1], self.parts, self.embedding_dim, self.dropout, feature_height)
        else:
            self.neck = convnet_neck(flat_features, self.embedding_dim, self.dropout)

    def _flat_features(self) -> int:
        """Size of the flattened backbone output, found by running a dummy image through it."""
        return int(torch.tensor(self._feature_shape()).prod())

    def _feature_shape(self) -> tuple[int, ...]:
        """Shape of the backbone's output for one image, without the batch axis."""
        dummy = torch.zeros(1, self.in_channels, *self.image_size)  # (1, C, H, W)
        with torch.no_grad():
            return tuple(self.backbone.eval()(dummy).shape[1:])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.in_channels or tuple(images.shape[2:]) != self.image_size:
            raise ValueError(
                f"expected images of shape (B, {self.in_channels}, {self.image_size[0]}, {self.image_size[1]}), "
                f"got {tuple(images.shape)}"
            )
        features = self.backbone(images)  # (B, C', H', W')
        embeddings = self.neck(features)  # (B, D)
        if self.normalize:
            embeddings = nn.functional.normalize(embeddings.float(), dim=1)  # (B, D), unit length
        return embeddings

    @classmethod
    def from_config(cls, config) -> EmbeddingNet:
        """A network (untrained) as a `ModelConfig` describes it."""
        return cls(
            **config.network_arguments(),
            preprocessing=config.preprocessing.to_dict(),
            calibration=config.calibration.to_dict(),
            training=dict(config.training),
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path,
        revision: str | None = None,
        device: str = "cpu",
        local_files_only: bool | None = None,
        **_ignored,
    ) -> EmbeddingNet:
        """Load strictly, in eval mode, from a model folder or Hub repo (safetensors only).

        Replaces the Hub mixin's loader, which is lenient (strict=False) about missing weights. Raises
        `ModelLoadError` with one clear message per failure.
        """
        folder, source = model_folder(name_or_path, revision, local_files_only)
        model_config = read_model_config(folder, source)
        try:
            model = cls.from_config(model_config)
        except Exception as error:  # any constructor failure means the config describes no valid network
            raise ModelLoadError(f"invalid {CONFIG_FILE} in {source}: {type(error).__name__}: {error}") from error
        load_weights(model, folder, source, device)
        return model.to(device).eval()

    def encode(
        self,
        images,
        batch_size: int = 256,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        on_device: bool = False,
    ) -> torch.Tensor:
        """Embeddings (N, D) of file paths, PIL images, numpy arrays or tensors, preprocessed as saved.

        The one way to embed. Unit length for models trained with `normalize` (all the bundled ones). A uint8
        batch (N, C, H, W) already in the model's input form goes straight in. float32 on the CPU, or on the
        model's device with `on_device`.
        """
        return encode_images(self, images, batch_size, device, precision, on_device)

    def similarity(self, first, second) -> torch.Tensor:
        """Distances (N, M) between the embeddings of two sets of images: smaller is more similar."""
        return pairwise_distances(self.encode(first), self.encode(second))  # (N, M)

    def verify(self, first, second) -> dict | list[dict]:
        """Same or not, per pair: `same`, `distance`, `threshold`, and the test error rates at that threshold.

        One image each gives one dict; two equally long lists give one dict per pair.
        """
        first_embeddings, second_embeddings = self.encode(first), self.encode(second)  # (N, D), (N, D)
        if first_embeddings.shape[0] != second_embeddings.shape[0]:
            raise ValueError(f"verify needs pairs: got {first_embeddings.shape[0]} and {second_embeddings.shape[0]}")
        distances = paired_distances(first_embeddings, second_embeddings)  # (N,)
        verdicts = [verdict(float(distance), self.calibration) for distance in distances]
        return verdicts[0] if len(verdicts) == 1 else verdicts

    @property
    def config(self):
        """The typed `ModelConfig` of this network, as config.json stores it."""
        return ModelConfig.from_dict(self.config_dict())

    def config_dict(self) -> dict:
        """Everything `config.json` holds: the network's fields (`siamese.modeling.config.NETWORK_FIELDS`),
        its preprocessing, calibration and provenance."""
        values = {key: getattr(self, "backbone_name" if key == "backbone" else key) for key in NETWORK_FIELDS}
        values.update(image_size=list(self.image_size), widths=list(self.widths))
        return {
            **values,
            "preprocessing": self.preprocessing,
            "calibration": self.calibration,
            "training": self.training_info,
        }
