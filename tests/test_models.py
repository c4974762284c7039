"""Embedding networks: output shapes, gradients everywhere, derived flat sizes, clear shape errors."""

from __future__ import annotations

import pytest
import torch

from siamese.modeling.losses import ContrastiveLoss
from siamese.modeling.network import EmbeddingNet

CASES = [
    ({"architecture": "tutorial"}, (1, 28, 28)),
    ({"architecture": "tutorial", "in_channels": 3, "image_size": (40, 36)}, (3, 40, 36)),
    ({"architecture": "article", "image_size": (100, 100), "embedding_dim": 5, "dropout": 0.2}, (1, 100, 100)),
    ({"architecture": "convnet", "widths": (8, 16), "image_size": (56, 46), "normalize": True}, (1, 56, 46)),
    (
        {
            "architecture": "convnet",
            "widths": (8, 16),
            "image_size": (56, 46),
            "normalize": True,
            "parts": 3,
            "embedding_dim": 16,
        },
        (1, 56, 46),
    ),
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


def test_part_embeddings_are_unit_chunks_of_the_whole_map_and_each_stripe():
    torch.manual_seed(0)
    model = EmbeddingNet(
        architecture="convnet", widths=(8,), image_size=(24, 20), embedding_dim=12, normalize=True, parts=2
    ).eval()
    images = torch.randn(5, 1, 24, 20)
    with torch.no_grad():
        embeddings = model(images)  # (5, 12): whole map, top stripe, bottom stripe, 4 each
        features = model.backbone(images)  # (5, 8, 12, 10)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(5), atol=1e-5)
    chunks = embeddings.reshape(5, 3, 4) * 3**0.5
    assert torch.allclose(chunks.norm(dim=2), torch.ones(5, 3), atol=1e-5)
    # Recompute each chunk by hand: mean over its rows of the feature map, then that chunk's linear map.
    regions = [features, features[:, :, :6], features[:, :, 6:]]
    for index, region in enumerate(regions):
        pooled = region.mean(dim=(2, 3))  # (5, 8)
        expected = pooled @ model.neck.weight[index] + model.neck.bias[index]  # (5, 4)
        expected = expected / expected.norm(dim=1, keepdim=True)
        assert torch.allclose(chunks[:, index], expected, atol=1e-5)


def test_part_embeddings_need_a_size_that_splits_and_unit_length():
    with pytest.raises(ValueError, match="parts \\+ 1 = 4 equal chunks"):
        EmbeddingNet(architecture="convnet", widths=(8,), embedding_dim=10, normalize=True, parts=3)
    with pytest.raises(ValueError, match="normalize=True"):
        EmbeddingNet(architecture="convnet", widths=(8,), embedding_dim=12, normalize=False, parts=3)
    with pytest.raises(ValueError, match="convnet architecture"):
        EmbeddingNet(architecture="tutorial", embedding_dim=12, normalize=True, parts=3)
