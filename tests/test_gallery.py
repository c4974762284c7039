"""Gallery ranking against a brute-force numpy computation; labels from file names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siamese.modeling.network import EmbeddingNet
from siamese.search.gallery import Gallery, label_from_filename


def brute_force(embeddings: np.ndarray, labels: list[str], query: np.ndarray, top_k: int):
    distances = np.sqrt(((embeddings - query[None, :]) ** 2).sum(axis=1))
    order = np.argsort(distances, kind="stable")[:top_k]
    best_label = labels[order[0]]
    other = [distance for distance, label in zip(distances, labels, strict=True) if label != best_label]
    margin = min(other) - distances[order[0]] if other else None
    return order, distances, margin


@pytest.mark.parametrize("top_k", [1, 3, 10])
def test_rank_matches_brute_force_order_distances_and_margin(top_k):
    generator = np.random.default_rng(0)
    embeddings = generator.normal(size=(40, 8)).astype(np.float32)
    labels = [f"class{index % 6}" for index in range(40)]
    gallery = Gallery(torch.from_numpy(embeddings), labels)
    for _ in range(5):
        query = generator.normal(size=8).astype(np.float32)
        ranking = gallery.rank(torch.from_numpy(query), top_k=top_k)
        order, distances, margin = brute_force(embeddings, labels, query, top_k)
        assert [match.index for match in ranking.matches] == order.tolist()
        np.testing.assert_allclose(
            [match.distance for match in ranking.matches], distances[order], rtol=1e-4, atol=1e-5
        )
        assert ranking.best_label == labels[order[0]]
        assert ranking.margin == pytest.approx(margin, rel=1e-4, abs=1e-5)
        assert ranking.margin >= 0


def test_rank_says_no_match_when_the_best_distance_is_beyond_the_threshold():
    gallery = Gallery(torch.tensor([[0.0, 0.0], [3.0, 0.0]]), ["a", "b"])
    near = gallery.rank(torch.tensor([0.5, 0.0]), top_k=2, threshold=1.0)
    assert near.is_match and near.best_label == "a" and near.runner_up_label == "b"
    assert near.margin == pytest.approx(2.5 - 0.5)
    far = gallery.rank(torch.tensor([0.0, 5.0]), top_k=2, threshold=1.0)
    assert not far.is_match and far.best_label is None
    assert far.matches[0].label == "a" and far.best_distance == pytest.approx(5.0)


def test_single_label_gallery_has_no_margin_and_top_k_is_capped():
    gallery = Gallery(torch.eye(3), ["alice"] * 3)
    ranking = gallery.rank(torch.tensor([1.0, 0.0, 0.0]), top_k=10)
    assert len(ranking.matches) == 3
    assert ranking.margin is None and ranking.runner_up_label is None
    assert ranking.matches[0].distance == pytest.approx(0.0, abs=1e-6)


def test_gallery_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="labels"):
        Gallery(torch.zeros(3, 4), ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        Gallery(torch.zeros(0, 4), [])
    with pytest.raises(ValueError, match="dimensions"):
        Gallery(torch.zeros(2, 4), ["a", "b"]).rank(torch.zeros(5))


def test_build_embeds_images_with_the_model_once_and_restores_its_mode():
    model = EmbeddingNet(architecture="convnet", widths=(4, 8), embedding_dim=6, image_size=(28, 28)).train()
    images = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    gallery = Gallery.build(model, images, [str(index % 3) for index in range(12)])
    assert gallery.embeddings.shape == (12, 6)
    assert model.training
    model.eval()
    with torch.inference_mode():
        expected = model(images.float() / 255.0)
    torch.testing.assert_close(gallery.embeddings, expected, rtol=1e-4, atol=1e-5)


def test_a_1000_image_gallery_ranks_quickly():
    import time

    gallery = Gallery(torch.randn(1000, 64), [str(index % 50) for index in range(1000)])
    query = torch.randn(64)
    start = time.perf_counter()
    for _ in range(20):
        gallery.rank(query, top_k=5, threshold=1.0)
    assert (time.perf_counter() - start) / 20 < 0.02


@pytest.mark.parametrize(
    ("filename", "label"),
    [
        ("alice_1.png", "alice"),
        ("alice-02.jpg", "alice"),
        ("alice (3).png", "alice"),
        ("bob-smith_03.jpg", "bob-smith"),
        ("7_12.png", "7"),
        ("7.png", "7"),
        ("carol.png", "carol"),
        ("/tmp/upload/abc/person07_1.pgm", "person07"),
    ],
)
def test_label_from_filename_drops_the_trailing_number(filename, label):
    assert label_from_filename(filename) == label
