"""Embedding networks: output shapes, gradients everywhere, derived flat sizes, clear shape errors."""

from __future__ import annotations

import pytest
import torch

from siamese.losses import ContrastiveLoss
from siamese.models import EmbeddingNet

CASES = [
    ({"architecture": "tutorial"}, (1, 28, 28)),
    ({"architecture": "tutorial", "in_channels": 3, "image_size": (40, 36)}, (3, 40, 36)),
    ({"architecture": "article", "image_size": (100, 100), "embedding_dim": 5, "dropout": 0.2}, (1, 100, 100)),
    ({"architecture": "convnet", "widths": (8, 16), "image_size": (56, 46), "normalize": True}, (1, 56, 46)),
]


@pytest.mark.parametrize(("arguments", "shape"), CASES)
def test_output_shape_and_a_gradient_on_every_parameter(arguments, shape):
    model = EmbeddingNet(**arguments)
    images = torch.randn(6, *shape)
    embeddings = model(images)
    assert embeddings.shape == (6, model.embedding_dim)
    ContrastiveLoss()(embeddings, torch.tensor([0, 0, 1, 1, 2, 2])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reached {name}"


def test_tutorial_network_has_the_published_layers():
    model = EmbeddingNet(architecture="tutorial", embedding_dim=50)
    convolutions = [m for m in model.backbone if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convolutions] == [(64, (5, 5)), (128, (5, 5)), (256, (3, 3))]
    linears = [m for m in model.neck if isinstance(m, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [
        (256 * 3 * 3, 1024),
        (1024, 256),
        (256, 50),
    ]


def test_normalised_embeddings_have_unit_length():
    model = EmbeddingNet(architecture="convnet", widths=(8,), normalize=True).eval()
    norms = model(torch.randn(4, 1, 28, 28)).norm(dim=1)
    assert torch.allclose(norms, torch.ones(4), atol=1e-5)


def test_the_same_module_embeds_both_images_of_a_pair():
    model = EmbeddingNet(architecture="convnet", widths=(8,)).eval()
    first, second = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
    together = model(torch.cat([first, second]))
    assert torch.allclose(together[:3], model(first), atol=1e-5)
    assert torch.allclose(together[3:], model(second), atol=1e-5)


def test_wrong_input_shape_is_a_clear_error():
    model = EmbeddingNet()
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="architecture must be one of"):
        EmbeddingNet(architecture="resnet9000")
