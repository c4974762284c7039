"""Pretrained backbones from timm: built without weights for saved models, with weights for fine-tuning.

A backbone is named `timm:<architecture>` (`timm:resnet18`, `timm:convnext_nano`) or
`timm:hf-hub:<org>/<repo>` for timm weights on the Hugging Face Hub. Pretrained weights come
through timm from the Hub, into the Hub's cache, so `HF_HUB_OFFLINE=1` and `HF_ENDPOINT` apply.
A saved model stores the plain architecture name: reloading it never downloads anything, since
the fine-tuned weights are in its own `model.safetensors`.
"""

from __future__ import annotations

from torch import nn

PREFIX = "timm:"


def parse_backbone(name: str) -> str:
    """`timm:resnet18` -> `resnet18`; a clear error for anything else."""
    if not isinstance(name, str) or not name.startswith(PREFIX) or len(name) == len(PREFIX):
        raise ValueError(f"--backbone must look like timm:<name> (e.g. timm:resnet18), got {name!r}")
    return name[len(PREFIX) :]


def resolve_architecture(source: str) -> str:
    """The timm architecture behind `source`: itself, or what an `hf-hub:` repo's config names."""
    if not source.startswith("hf-hub:"):
        return source
    # Optional dependency: timm (the timm extra) is needed only for --backbone timm:<name>.
    from timm.models import load_model_config_from_hf

    _pretrained_config, architecture, _model_args = load_model_config_from_hf(source[len("hf-hub:") :])
    return architecture


def create_backbone(architecture: str, in_channels: int, pretrained_source: str | None = None) -> nn.Module:
    """A timm feature extractor (B, C, H, W) -> (B, F), pooled, with no classifier.

    With `pretrained_source` (an architecture name or `hf-hub:` id) its pretrained weights are loaded.
    """
    try:
        # Optional dependency: timm (the timm extra) is needed only for --backbone timm:<name>.
        import timm
    except ImportError as error:
        raise ImportError("timm backbones need the timm package: pip install timm") from error
    if pretrained_source is None:
        if architecture not in timm.list_models() and not timm.is_model(architecture):
            raise ValueError(f"timm has no architecture {architecture!r}; see timm.list_models()")
        return timm.create_model(architecture, pretrained=False, num_classes=0, in_chans=in_channels)
    return timm.create_model(pretrained_source, pretrained=True, num_classes=0, in_chans=in_channels)


def data_config(source: str) -> dict:
    """Input size (height, width), mean and std that the backbone's weights expect, from timm's data config."""
    # Optional dependency: timm (the timm extra) is needed only for --backbone timm:<name>.
    import timm

    if source.startswith("hf-hub:"):
        # Optional dependency: timm (the timm extra) is needed only for --backbone timm:<name>.
        from timm.models import load_model_config_from_hf

        pretrained_config, _architecture, _model_args = load_model_config_from_hf(source[len("hf-hub:") :])
        resolved = timm.data.resolve_data_config({}, pretrained_cfg=pretrained_config)
    else:
        model = timm.create_model(source, pretrained=False, num_classes=0)
        resolved = timm.data.resolve_model_data_config(model)
    channels, height, width = resolved["input_size"]
    return {
        "size": [int(height), int(width)],
        "grayscale": channels == 1,
        "mean": [float(value) for value in resolved["mean"]],
        "std": [float(value) for value in resolved["std"]],
    }
