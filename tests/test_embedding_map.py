"""t-SNE map: placement of new points, the LRU cache, and the plotly figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siamese.evaluation.embedding_map import EmbeddingMap, MapCache, compute_map, map_figure


def clustered(count: int = 120, classes: int = 4, dim: int = 8, seed: int = 0):
    generator = np.random.default_rng(seed)
    centres = generator.normal(size=(classes, dim)) * 6
    labels = np.arange(count) % classes
    points = centres[labels] + generator.normal(size=(count, dim))
    return torch.from_numpy(points.astype(np.float32)), labels


@pytest.fixture(scope="module")
def small_map() -> EmbeddingMap:
    embeddings, labels = clustered()
    return compute_map(embeddings, labels, ["a", "b", "c", "d"], perplexity=15, max_iter=250)


def test_a_reference_point_is_placed_on_its_own_position(small_map):
    placed = small_map.place(small_map.embeddings[:10])
    np.testing.assert_allclose(placed, small_map.positions[:10], atol=1e-6)


def test_placement_is_the_inverse_distance_weighted_mean_of_the_nearest_positions(small_map):
    query = small_map.embeddings[:3] + 0.3  # (3, D), near but not on reference points
    placed = small_map.place(query, neighbours=4)
    distances = np.linalg.norm(small_map.embeddings.numpy()[None] - query.numpy()[:, None], axis=2)  # (3, N)
    for row in range(3):
        nearest = np.argsort(distances[row])[:4]
        weights = 1 / distances[row, nearest]
        expected = (weights[:, None] * small_map.positions[nearest]).sum(axis=0) / weights.sum()
        np.testing.assert_allclose(placed[row], expected, rtol=1e-5, atol=1e-6)


def test_a_new_point_lands_among_its_own_class(small_map):
    query = small_map.embeddings[small_map.labels == 2].mean(dim=0, keepdim=True)  # (1, D)
    placed = small_map.place(query)[0]
    centres = np.stack([small_map.positions[small_map.labels == label].mean(axis=0) for label in range(4)])
    assert int(np.argmin(np.linalg.norm(centres - placed, axis=1))) == 2


def test_map_is_deterministic_for_a_fixed_seed_and_clamps_perplexity():
    embeddings, labels = clustered(count=12)
    first = compute_map(embeddings, labels, list("abcd"), perplexity=30, max_iter=250)
    second = compute_map(embeddings, labels, list("abcd"), perplexity=30, max_iter=250)
    np.testing.assert_allclose(first.positions, second.positions)
    assert first.perplexity < 12
    with pytest.raises(ValueError, match="at least 5"):
        compute_map(embeddings[:3], labels[:3], list("abcd"))


def test_cache_returns_the_same_object_without_recomputing_and_evicts_the_oldest(small_map):
    cache = MapCache(capacity=2)
    calls = []

    def compute():
        calls.append(1)
        return small_map

    assert cache.get(("m", 100, 30.0), compute) is small_map
    assert cache.get(("m", 100, 30.0), compute) is small_map
    assert len(calls) == 1 and cache.computations == 1
    cache.get(("m", 200, 30.0), compute)
    cache.get(("m", 300, 30.0), compute)
    assert ("m", 100, 30.0) not in cache and len(cache) == 2
    cache.get(("m", 100, 30.0), compute)
    assert len(calls) == 4


def test_figure_has_a_trace_per_class_and_one_for_placed_images(small_map):
    placed = small_map.place(small_map.embeddings[:2])
    figure = map_figure(small_map, placed, ["mine_1.png", "mine_2.png"], ["a", "b"])
    names = [trace.name for trace in figure.data]
    assert names == ["a", "b", "c", "d", "your images"]
    assert "class" in figure.data[0].hovertemplate and "index" in figure.data[0].hovertemplate


def test_large_maps_draw_with_webgl_and_every_class_gets_its_own_colour():
    from siamese.evaluation.embedding_map import WEBGL_POINTS, EmbeddingMap, class_colours, map_figure

    def toy_map(count: int, classes: int) -> EmbeddingMap:
        rng = np.random.default_rng(0)
        return EmbeddingMap(
            positions=rng.normal(size=(count, 2)),
            embeddings=torch.zeros(count, 2),
            labels=np.arange(count) % classes,
            class_names=[f"s{index}" for index in range(classes)],
            perplexity=5.0,
            seed=0,
        )

    small = map_figure(toy_map(100, 40))
    large = map_figure(toy_map(WEBGL_POINTS + 1, 40))
    assert {trace.type for trace in small.data} == {"scatter"}
    assert {trace.type for trace in large.data} == {"scattergl"}
    assert len({trace.marker.color for trace in small.data}) == 40
    assert len(set(class_colours(40))) == 40
