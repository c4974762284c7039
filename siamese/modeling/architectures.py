"""The built-in embedding networks, registered by name: each builds a backbone and a neck for `EmbeddingNet`.

A backbone maps images (B, C, H, W) to features; a neck maps the features to embeddings (B, D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from siamese._registry import Registry
from siamese.faces.resnet import EMBEDDING_SIZE, INPUT_SIZE, FaceResNet
from siamese.modeling.backbones import create_backbone


@dataclass(frozen=True)
class NetworkShape:
    """What a builder needs to know: the network's fields from `siamese.modeling.config.NETWORK_FIELDS`."""

    embedding_dim: int
    in_channels: int
    image_size: tuple[int, int]
    widths: tuple[int, ...]
    dropout: float
    pooling: str
    parts: int
    backbone: str | None


ARCHITECTURES: Registry = Registry("architecture")


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


def mlp_neck(flat_features: int, hidden: tuple[int, ...], embedding_dim: int) -> nn.Sequential:
    """Flatten, then Linear/ReLU through `hidden` widths, then a final Linear: the seed networks' heads."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = flat_features
    for next_width in hidden:
        layers += [nn.Linear(width, next_width), nn.ReLU()]
        width = next_width
    return nn.Sequential(*layers, nn.Linear(width, embedding_dim))


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


def feature_shape(backbone: nn.Module, in_channels: int, image_size: tuple[int, int]) -> tuple[int, ...]:
    """Shape of the backbone's output for one image, without the batch axis, found with a dummy image."""
    dummy = torch.zeros(1, in_channels, *image_size)  # (1, C, H, W)
    with torch.no_grad():
        return tuple(backbone.eval()(dummy).shape[1:])


def flat_features(backbone: nn.Module, shape: NetworkShape) -> int:
    """Size of the flattened backbone output."""
    return int(torch.tensor(feature_shape(backbone, shape.in_channels, shape.image_size)).prod())


@ARCHITECTURES.register("tutorial", "the MNIST tutorial's three conv stages and three-layer neck")
def build_tutorial(shape: NetworkShape) -> tuple[nn.Module, nn.Module]:
    backbone = tutorial_backbone(shape.in_channels)
    return backbone, mlp_neck(flat_features(backbone, shape), (1024, 256), shape.embedding_dim)


@ARCHITECTURES.register("article", "the faces article's reflection-padded sister network")
def build_article(shape: NetworkShape) -> tuple[nn.Module, nn.Module]:
    backbone = article_backbone(shape.in_channels, shape.dropout)
    return backbone, mlp_neck(flat_features(backbone, shape), (500, 500), shape.embedding_dim)


@ARCHITECTURES.register("convnet", "our BN conv net, optionally with part embeddings")
def build_convnet(shape: NetworkShape) -> tuple[nn.Module, nn.Module]:
    if shape.parts:
        # Part embeddings pool the final feature map themselves, so the backbone keeps it whole.
        backbone = convnet_backbone(shape.in_channels, shape.widths, "flatten")
        feature_height = feature_shape(backbone, shape.in_channels, shape.image_size)[1]
        return backbone, PartsNeck(shape.widths[-1], shape.parts, shape.embedding_dim, shape.dropout, feature_height)
    backbone = convnet_backbone(shape.in_channels, shape.widths, shape.pooling)
    return backbone, convnet_neck(flat_features(backbone, shape), shape.embedding_dim, shape.dropout)


@ARCHITECTURES.register("timm", "a timm backbone named by --backbone timm:<name>")
def build_timm(shape: NetworkShape) -> tuple[nn.Module, nn.Module]:
    backbone = create_backbone(shape.backbone, shape.in_channels)
    return backbone, convnet_neck(backbone.num_features, shape.embedding_dim, shape.dropout)


@ARCHITECTURES.register("dlib_resnet", "dlib's ResNet face descriptor (29 conv layers) on 150x150 aligned RGB chips")
def build_dlib_resnet(shape: NetworkShape) -> tuple[nn.Module, nn.Module]:
    expected = (3, (INPUT_SIZE, INPUT_SIZE), EMBEDDING_SIZE)
    if (shape.in_channels, shape.image_size, shape.embedding_dim) != expected:
        raise ValueError(
            f"the dlib_resnet architecture takes 3x{INPUT_SIZE}x{INPUT_SIZE} chips to {EMBEDDING_SIZE} numbers, got "
            f"{shape.in_channels}x{shape.image_size[0]}x{shape.image_size[1]} to {shape.embedding_dim}"
        )
    # The network ends in its own 128-d layer, so no neck follows it.
    return FaceResNet(), nn.Identity()
