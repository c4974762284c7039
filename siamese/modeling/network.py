"""Embedding networks: one module maps an image batch to an embedding batch.

A Siamese pair is the same module applied to both images, so there is no two-input model here.
"""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from siamese.data.images import ALIGNED_FACES, aligns_faces, find_face
from siamese.distances import paired_distances, pairwise_distances
from siamese.evaluation.calibration import verdict
from siamese.modeling.architectures import ARCHITECTURES, NetworkShape
from siamese.modeling.config import NETWORK_FIELDS, ModelConfig, parts_supported
from siamese.modeling.encode import embed_prepared, prepare_images
from siamese.modeling.files import CONFIG_FILE, ModelLoadError, load_weights, model_folder, read_model_config


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
        build = ARCHITECTURES.get(architecture)
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
        if self.parts < 0 or (self.parts and not parts_supported(architecture, pooling, normalize)):
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

        shape = NetworkShape(
            self.embedding_dim, self.in_channels, self.image_size, self.widths, self.dropout, self.pooling, self.parts,
            backbone,
        )  # fmt: skip
        self.backbone, self.neck = build(shape)

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
        skip_no_face: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[int]]:
        """Embeddings (N, D) of file paths, PIL images, numpy arrays or tensors, preprocessed as saved.

        The one way to embed. Unit length for models trained with `normalize` (all the bundled ones). A uint8
        batch (N, C, H, W) already in the model's input form goes straight in. float32 on the CPU, or on the
        model's device with `on_device`. A face model raises NoFaceError for a photo with no face found, unless
        `skip_no_face` (for batches of examples): then such photos are left out and (embeddings (K, D), kept)
        comes back, `kept` the positions of the photos embedded.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        model = self if device is None else self.to(device)
        shape = (self.in_channels, *self.image_size)
        if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and tuple(images.shape[1:]) == shape:
            batch, kept = images, list(range(images.shape[0]))  # (N, C, H, W), already in the model's input form
        elif skip_no_face:
            batch, kept = prepare_images(images, self.preprocessing, self.image_size, self.in_channels, True)
        else:
            batch = prepare_images(images, self.preprocessing, self.image_size, self.in_channels)  # (N, C, H, W)
        embeddings = embed_prepared(model, batch, self.preprocessing, batch_size, precision, on_device)  # (N, D)
        return (embeddings, kept) if skip_no_face else embeddings

    def find_face(self, image, name: str | None = None):
        """For a face model: the face of `image` that `encode` embeds, the largest, as a `FoundFace` with its aligned
        chip (150, 150, 3) uint8 for display, its box and landmarks, and `face_count`, the faces the photo has.
        A photo with no face raises NoFaceError, naming it."""
        if not aligns_faces(self.preprocessing):
            raise ValueError(f"find_face needs a face model (preprocessing kind {ALIGNED_FACES!r}); this one is "
                             f"{self.preprocessing.get('kind')!r}")  # fmt: skip
        return find_face(image, name)

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
