"""dlib's ResNet face descriptor (`dlib_face_recognition_resnet_model_v1.dat`) as a PyTorch module.

The network is the `anet_type` of dlib's tools/python/src/face_recognition.cpp: a 7x7 stride-2 stem, 14
residual blocks in five stages (32, 64, 128, 256, 256 channels), global average pooling and a 128-wide
linear layer without bias. 29 convolutions, 5.6M parameters. It takes a 150x150 aligned RGB face chip
normalised as (pixel - mean) / 256 and gives an unnormalised 128-number descriptor; dlib compares
descriptors by Euclidean distance (same person below 0.6).

Two details of dlib's layers matter for matching it exactly:

- a stride-2 convolution or pooling has no padding (dlib's default padding is size // 2 only at stride 1);
- `add_prev` adds tensors of different shapes by zero-padding the smaller one at the end of each axis. In
  a downsampling block the shortcut is a 2x2 average pool, which has fewer channels than the convolution
  path and, from 8x8 inputs, one more row and column (4x4 against 3x3).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from .dlib_format import DlibLayer, DlibNetwork, read_dlib_network
from .weights import resnet_model_path

# dlib's input_rgb_image_sized<150>: per-channel means (stored as float32 in the model file).
DLIB_RGB_MEANS = (122.782, 117.001, 104.298)
INPUT_SIZE = 150
EMBEDDING_SIZE = 128
# (channels, blocks, whether the first block halves the resolution), input side first.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def normalize_chips(chips: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB chips (B, H, W, 3) or one chip (H, W, 3) as the network's float input (B, 3, H, W)."""
    chips = torch.as_tensor(chips)
    if chips.dtype != torch.uint8:
        raise TypeError(f"expected uint8 RGB chips, got {chips.dtype}")
    if chips.dim() == 3:
        chips = chips.unsqueeze(0)  # (1, H, W, 3)
    if chips.dim() != 4 or chips.shape[-1] != 3:
        raise ValueError(f"expected chips shaped (B, H, W, 3), got {tuple(chips.shape)}")
    means = torch.tensor(DLIB_RGB_MEANS, dtype=torch.float32).view(1, 3, 1, 1)
    # float32 subtraction then an exact division by 256, as dlib computes it.
    return (chips.permute(0, 3, 1, 2).float() - means) / 256.0  # (B, 3, H, W)


class Affine(nn.Module):
    """A frozen batch normalisation: y = x * weight[c] + bias[c] (dlib's affine_ layer in convolution mode)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)  # (B, C, H, W)


def _dlib_conv(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Conv2d:
    """A convolution with dlib's default padding: kernel // 2 at stride 1, none otherwise."""
    padding = kernel // 2 if stride == 1 else 0
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=True)


def add_zero_padded(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Sum of two (B, C, H, W) tensors, each zero-padded at the end of C, H and W to the larger size."""
    channels = max(first.shape[1], second.shape[1])
    height = max(first.shape[2], second.shape[2])
    width = max(first.shape[3], second.shape[3])

    def padded(x: torch.Tensor) -> torch.Tensor:
        grow = (0, width - x.shape[3], 0, height - x.shape[2], 0, channels - x.shape[1])
        return functional.pad(x, grow) if any(grow) else x

    return padded(first) + padded(second)  # (B, C, H, W)


class Stem(nn.Module):
    """7x7 stride-2 convolution, affine, ReLU, 3x3 stride-2 max pool: 150x150 -> 72x72 -> 35x35."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.conv = _dlib_conv(3, channels, 7, 2)
        self.affine = Affine(channels)
        self.pool = nn.MaxPool2d(3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(functional.relu(self.affine(self.conv(x))))  # (B, 32, 35, 35)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with affines; the shortcut is the input, or its 2x2 average pool when downsampling."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.conv1 = _dlib_conv(in_channels, out_channels, 3, 2 if downsample else 1)
        self.affine1 = Affine(out_channels)
        self.conv2 = _dlib_conv(out_channels, out_channels, 3, 1)
        self.affine2 = Affine(out_channels)
        self.shortcut = nn.AvgPool2d(2, stride=2, padding=0) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.affine2(self.conv2(functional.relu(self.affine1(self.conv1(x)))))  # (B, C_out, H', W')
        return functional.relu(add_zero_padded(self.shortcut(x), residual))  # (B, C_out, H'', W'')


class Stage(nn.Module):
    def __init__(self, in_channels: int, channels: int, blocks: int, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResidualBlock(in_channels if index == 0 else channels, channels, downsample and index == 0)
            for index in range(blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class FaceResNet(nn.Module):
    """dlib's face descriptor network: normalised chips (B, 3, 150, 150) -> unnormalised descriptors (B, 128)."""

    def __init__(self):
        super().__init__()
        self.stem = Stem(STAGES[0][0])
        stages, in_channels = [], STAGES[0][0]
        for channels, blocks, downsample in STAGES:
            stages.append(Stage(in_channels, channels, blocks, downsample))
            in_channels = channels
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(in_channels, EMBEDDING_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 32, 35, 35)
        for stage in self.stages:
            x = stage(x)  # ... (B, 256, 2, 2) after the last stage
        return self.head(x.mean(dim=(2, 3)))  # (B, 128)

    @torch.no_grad()
    def embed_chips(self, chips: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Descriptors (B, 128) of uint8 RGB chips (B, 150, 150, 3), like dlib's compute_face_descriptor."""
        device = next(self.parameters()).device
        return self(normalize_chips(chips).to(device))


# ---------------------------------------------------------------------------------------------------------
# Loading dlib's weights


def _layer_plan(model: FaceResNet) -> list[tuple[str, object]]:
    """The layers dlib stores for this architecture, input side first, with the module each one fills."""
    plan: list[tuple[str, object]] = [
        ("con", model.stem.conv),
        ("affine", model.stem.affine),
        ("relu", None),
        ("max_pool", model.stem.pool),
    ]
    for stage in model.stages:
        for block in stage.blocks:
            plan += [
                ("tag_or_skip", None),  # tag1: the block's input
                ("con", block.conv1),
                ("affine", block.affine1),
                ("relu", None),
                ("con", block.conv2),
                ("affine", block.affine2),
            ]
            if block.downsample:
                # tag2 marks the convolution path; skip1 goes back to the input for the pooled shortcut.
                plan += [("tag_or_skip", None), ("tag_or_skip", None), ("avg_pool", block.shortcut)]
            plan += [("add_prev", None), ("relu", None)]
    plan += [("avg_pool", "everything"), ("fc", model.head)]
    return plan


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def _check(condition: bool, index: int, layer: DlibLayer, message: str) -> None:
    if not condition:
        raise ValueError(f"dlib layer {index} ({layer.version}, byte {layer.offset}): {message}")


def _check_window(index: int, layer: DlibLayer, kernel, stride, padding) -> None:
    found = (
        (layer.attributes["rows"], layer.attributes["columns"]),
        (layer.attributes["stride_y"], layer.attributes["stride_x"]),
        (layer.attributes["padding_y"], layer.attributes["padding_x"]),
    )
    expected = (_pair(kernel), _pair(stride), _pair(padding))
    _check(found == expected, index, layer, f"(size, stride, padding) {found}, the model has {expected}")


def dlib_state_dict(model: FaceResNet, network: DlibNetwork) -> dict[str, torch.Tensor]:
    """The model's state dict filled from a parsed dlib network, after checking every layer against the model."""
    means = np.float32(network.input.attributes["means"])
    if not np.array_equal(means, np.float32(DLIB_RGB_MEANS)):
        raise ValueError(f"the file's input means {tuple(means)} differ from DLIB_RGB_MEANS {DLIB_RGB_MEANS}")
    if network.input.attributes.get("rows", INPUT_SIZE) != INPUT_SIZE:
        raise ValueError(f"the file's input size is {network.input.attributes['rows']}, not {INPUT_SIZE}")

    plan = _layer_plan(model)
    kinds = [layer.kind for layer in network.layers]
    expected_kinds = [kind for kind, _ in plan]
    if kinds != expected_kinds:
        first = next(
            (i for i, (a, b) in enumerate(zip(kinds, expected_kinds, strict=False)) if a != b),
            min(len(kinds), len(expected_kinds)),
        )
        raise ValueError(
            f"the file's layers differ from FaceResNet's at position {first}: "
            f"file {kinds[first : first + 3]} (of {len(kinds)}), model {expected_kinds[first : first + 3]} "
            f"(of {len(expected_kinds)})"
        )

    module_names = {module: name for name, module in model.named_modules()}
    state: dict[str, torch.Tensor] = {}
    for index, ((kind, module), layer) in enumerate(zip(plan, network.layers, strict=True)):
        if kind == "con":
            weight = layer.tensors["weight"]
            _check(weight.shape == tuple(module.weight.shape), index, layer, f"weight shape {weight.shape}")
            _check("bias" in layer.tensors and not layer.attributes["use_relu"], index, layer, "bias/relu flags")
            _check_window(index, layer, module.kernel_size, module.stride, module.padding)
            name = module_names[module]
            state[f"{name}.weight"] = torch.from_numpy(weight.copy())
            state[f"{name}.bias"] = torch.from_numpy(layer.tensors["bias"].copy())
        elif kind == "affine":
            _check(not layer.attributes["disabled"], index, layer, "the affine layer is disabled")
            _check(layer.attributes["mode"] == 0, index, layer, "not a per-channel (convolution mode) affine")
            gamma, beta = layer.tensors["gamma"].reshape(-1), layer.tensors["beta"].reshape(-1)
            _check(gamma.size == module.weight.numel(), index, layer, f"{gamma.size} channels")
            name = module_names[module]
            state[f"{name}.weight"] = torch.from_numpy(gamma.copy())
            state[f"{name}.bias"] = torch.from_numpy(beta.copy())
        elif kind == "relu":
            _check(not layer.attributes["disabled"], index, layer, "the relu layer is disabled")
        elif kind == "max_pool":
            _check_window(index, layer, module.kernel_size, module.stride, module.padding)
        elif kind == "avg_pool" and isinstance(module, str):
            _check_window(index, layer, 0, 1, 0)  # dlib's avg_pool_everything: a window of the whole input
        elif kind == "avg_pool":
            _check_window(index, layer, module.kernel_size, module.stride, module.padding)
        elif kind == "fc":
            _check(not layer.attributes["has_bias"], index, layer, "expected fc_no_bias")
            weight = layer.tensors["weight"]  # (inputs, outputs): dlib computes x @ weight
            _check(weight.shape[::-1] == tuple(module.weight.shape), index, layer, f"weight shape {weight.shape}")
            state[f"{module_names[module]}.weight"] = torch.from_numpy(weight.T.copy())  # (128, 256)
    return state


def load_dlib_weights(model: FaceResNet, source: str | os.PathLike | DlibNetwork) -> FaceResNet:
    """Fill `model` in place from a dlib .dat file (or an already parsed network) and return it."""
    network = source if isinstance(source, DlibNetwork) else read_dlib_network(source)
    model.load_state_dict(dlib_state_dict(model, network), strict=True)
    return model


def from_dlib(path: str | os.PathLike | None = None) -> FaceResNet:
    """A FaceResNet in eval mode with dlib's weights; by default from the installed weights package."""
    if path is None:
        path = resnet_model_path()
    return load_dlib_weights(FaceResNet(), path).eval()
