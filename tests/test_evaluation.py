"""Retrieval metrics against scikit-learn and plain loops; evaluation never scores the training set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from siamese.data.datasets import ImageSet
from siamese.evaluation.retrieval import knn_accuracy, map_at_r, precision_at_1, retrieval_metrics
from siamese.modeling.network import EmbeddingNet


def clustered(seed: int, count: int, noise: float):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (count,), generator=generator)
    centres = torch.randn(4, 6, generator=generator) * 2
    return centres[labels] + noise * torch.randn(count, 6, generator=generator), labels


@pytest.mark.parametrize(("seed", "k"), [(0, 5), (1, 5), (2, 3), (3, 1)])
def test_knn_accuracy_matches_scikit_learn(seed, k):
    references, reference_labels = clustered(seed, 120, noise=2.0)
    queries, query_labels = clustered(seed + 100, 80, noise=2.0)
    classifier = KNeighborsClassifier(n_neighbors=k, metric="euclidean").fit(references.numpy(), reference_labels)
    expected = float(np.mean(classifier.predict(queries.numpy()) == query_labels.numpy()))
    assert knn_accuracy(queries, query_labels, references, reference_labels, k=k) == pytest.approx(expected)


def test_precision_at_1_and_map_at_r_match_loops():
    references, reference_labels = clustered(5, 60, noise=2.5)
    queries, query_labels = clustered(6, 30, noise=2.5)
    distances = torch.cdist(queries.double(), references.double())
    hits, average_precisions = [], []
    for q in range(len(query_labels)):
        order = torch.argsort(distances[q]).tolist()
        relevant = [int(reference_labels[i] == query_labels[q]) for i in order]
        hits.append(relevant[0])
        r = int((reference_labels == query_labels[q]).sum())
        found, total = 0, 0.0
        for rank in range(1, r + 1):
            if relevant[rank - 1]:
                found += 1
                total += found / rank
        average_precisions.append(total / r)
    assert precision_at_1(queries, query_labels, references, reference_labels) == pytest.approx(np.mean(hits))
    assert map_at_r(queries, query_labels, references, reference_labels) == pytest.approx(np.mean(average_precisions))


def test_perfect_clusters_score_one():
    references, reference_labels = clustered(7, 50, noise=0.01)
    queries, query_labels = clustered(7, 50, noise=0.01)
    assert map_at_r(queries, query_labels, references, reference_labels) == pytest.approx(1.0)


def test_embed_runs_in_inference_mode_and_restores_training_mode():
    model = EmbeddingNet(architecture="convnet", widths=(8,)).train()
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    embeddings = model.encode(images, batch_size=4)
    assert embeddings.shape == (10, 50) and not embeddings.requires_grad
    assert model.training
    model.eval()
    assert torch.allclose(embeddings, model(images.float() / 255), atol=1e-5)


def test_evaluation_refuses_the_training_set_as_test_set():
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    data = ImageSet(images, torch.tensor([0, 1] * 4), ["0", "1"])
    with pytest.raises(ValueError, match="held out"):
        retrieval_metrics(EmbeddingNet(), data, data)


def test_retrieval_uses_test_images_as_queries_and_training_images_as_references(monkeypatch):
    """Swap in an 'embedding' that reveals which set each call embeds."""
    calls = []

    def fake_encode(model, images, batch_size=256, device=None, precision="fp32", on_device=False):
        calls.append(images.shape[0])
        return images.flatten(1).float()[:, :3]

    monkeypatch.setattr(EmbeddingNet, "encode", fake_encode)
    train = ImageSet(torch.zeros(12, 1, 4, 4, dtype=torch.uint8), torch.arange(12) % 3, list("abc"))
    test = ImageSet(torch.zeros(5, 1, 4, 4, dtype=torch.uint8), torch.arange(5) % 3, list("abc"))
    retrieval_metrics(EmbeddingNet(), train, test)
    assert calls == [12, 5]  # references from the 12 training images, queries from the 5 test images


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_shared_neighbour_search_gives_the_three_separate_figures(seed):
    from siamese.evaluation.retrieval import neighbour_metrics

    generator = torch.Generator().manual_seed(seed)
    references = torch.randn(90, 6, generator=generator)
    reference_labels = torch.randint(0, 5, (90,), generator=generator)
    queries = torch.randn(37, 6, generator=generator)
    query_labels = torch.randint(0, 5, (37,), generator=generator)
    shared = neighbour_metrics(queries, query_labels, references, reference_labels, k=5, block=8)
    assert shared["knn_accuracy"] == pytest.approx(knn_accuracy(queries, query_labels, references, reference_labels, 5))
    assert shared["precision_at_1"] == pytest.approx(
        precision_at_1(queries, query_labels, references, reference_labels)
    )
    assert shared["map_at_r"] == pytest.approx(map_at_r(queries, query_labels, references, reference_labels))
