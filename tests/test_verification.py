"""Verification metrics against scikit-learn and brute force; one-shot accuracy on known cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from siamese.evaluation.verification import (
    best_accuracy_threshold,
    distance_histogram,
    one_shot_accuracy,
    pair_distances,
    roc_metrics,
    verification_report,
)


def scores(seed: int, count: int = 400, ties: bool = False):
    rng = np.random.default_rng(seed)
    same = rng.random(count) < 0.3
    distances = np.where(same, rng.normal(1.0, 0.4, count), rng.normal(1.8, 0.5, count)).clip(0)
    if ties:
        distances = np.round(distances, 1)
    return distances, same


@pytest.mark.parametrize(("seed", "ties"), [(0, False), (1, False), (2, True), (3, True)])
def test_auc_matches_scikit_learn_and_pair_counting(seed, ties):
    distances, same = scores(seed, ties=ties)
    result = roc_metrics(distances, same)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(same, -distances), abs=1e-12)
    genuine, impostor = distances[same], distances[~same]
    wins = sum((g < i) + 0.5 * (g == i) for g in genuine for i in impostor)
    assert result["roc_auc"] == pytest.approx(wins / (len(genuine) * len(impostor)), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_eer_matches_scikit_learn_roc_curve(seed):
    distances, same = scores(seed)
    false_accept, true_accept, _ = roc_curve(same, -distances)
    false_reject = 1 - true_accept
    # EER from scikit-learn's curve, interpolated where FAR - FRR changes sign.
    gap = false_accept - false_reject
    index = int(np.argmax(gap >= 0))
    weight = -gap[index - 1] / (gap[index] - gap[index - 1])
    expected = (1 - weight) * false_accept[index - 1] + weight * false_accept[index]
    result = roc_metrics(distances, same)
    assert result["eer"] == pytest.approx(expected, abs=2e-3)
    # At the reported threshold, the two error rates are both close to the EER.
    accepted = distances <= result["threshold_eer"]
    assert abs(np.mean(accepted[~same]) - result["eer"]) < 0.02
    assert abs(np.mean(~accepted[same]) - result["eer"]) < 0.02


def test_perfect_separation_has_zero_eer_and_unit_auc():
    distances = np.array([0.1, 0.2, 0.3, 1.0, 1.5])
    same = np.array([True, True, True, False, False])
    result = roc_metrics(distances, same)
    assert result["roc_auc"] == 1.0 and result["eer"] == 0.0
    threshold, accuracy = best_accuracy_threshold(distances, same)
    assert 0.3 < threshold < 1.0 and accuracy == 1.0
    # The EER threshold sits midway in the gap between the farthest genuine and the nearest impostor pair.
    assert result["threshold_eer"] == pytest.approx((0.3 + 1.0) / 2)


@pytest.mark.parametrize("seed", [0, 3])
def test_best_accuracy_threshold_matches_brute_force(seed):
    distances, same = scores(seed, count=200)
    threshold, accuracy = best_accuracy_threshold(distances, same)
    candidates = np.concatenate([[-1.0], np.sort(distances)])
    brute = max(np.mean((distances <= t) == same) for t in candidates)
    assert accuracy == pytest.approx(brute)
    assert np.mean((distances <= threshold) == same) == pytest.approx(accuracy)


def test_histogram_densities_integrate_to_one():
    distances, same = scores(4)
    histogram = distance_histogram(distances, same, bins=30)
    widths = np.diff(histogram["edges"])
    assert len(histogram["genuine"]) == len(histogram["impostor"]) == 30
    assert np.sum(np.array(histogram["genuine"]) * widths) == pytest.approx(1.0, abs=1e-4)
    assert np.sum(np.array(histogram["impostor"]) * widths) == pytest.approx(1.0, abs=1e-4)


def test_pair_distances_cover_all_pairs_or_a_sample():
    embeddings = torch.randn(30, 4)
    labels = torch.arange(30) % 5
    distances, same = pair_distances(embeddings, labels)
    assert len(distances) == 30 * 29 // 2
    expected = torch.pdist(embeddings).numpy()  # same i < j order
    assert np.allclose(distances, expected, atol=1e-5)
    sampled, sampled_same = pair_distances(embeddings, labels, max_pairs=100, seed=1)
    assert len(sampled) == 100 and sampled.min() > 0  # never an image with itself


def test_one_shot_accuracy_is_one_on_separated_clusters():
    labels = torch.arange(6).repeat_interleave(5)
    embeddings = torch.nn.functional.one_hot(labels).float() * 10 + 0.01 * torch.randn(30, 6)
    assert one_shot_accuracy(embeddings, labels, ways=4, draws=20) == 1.0


def test_one_shot_accuracy_on_a_known_case():
    """Class 0 at 0 and 10 on a line, class 1 at 4: a query of class 0 is right only if its
    reference is nearer than class 1's. Exact answer by enumerating the equally likely draws."""
    embeddings = torch.tensor([[0.0], [10.0], [4.0], [4.1]])
    labels = torch.tensor([0, 0, 1, 1])
    expected_draws = []
    for reference_0 in (0, 1):
        for reference_1 in (2, 3):
            queries = [i for i in range(4) if i not in (reference_0, reference_1)]
            for query in queries:
                d0 = abs(float(embeddings[query] - embeddings[reference_0]))
                d1 = abs(float(embeddings[query] - embeddings[reference_1]))
                expected_draws.append((0 if d0 < d1 else 1) == int(labels[query]))
    measured = one_shot_accuracy(embeddings, labels, ways=2, draws=4000, seed=0)
    assert measured == pytest.approx(np.mean(expected_draws), abs=0.03)
    with pytest.raises(ValueError, match="3-way"):
        one_shot_accuracy(embeddings, labels, ways=3)


def test_report_is_json_ready():
    import json

    embeddings = torch.randn(40, 3)
    labels = torch.arange(40) % 4
    report = verification_report(embeddings, labels, draws=10)
    json.dumps(report)
    assert report["one_shot_ways"] == 4 and report["genuine_pairs"] + report["impostor_pairs"] == 780


def test_within_group_one_shot_draws_its_classes_from_one_group_only():
    # Classes 0 and 2 sit on top of each other but belong to different groups: they are only ever
    # confused when a draw mixes groups.
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0], [0.0, 10.0]])
    labels = torch.arange(4).repeat_interleave(4)
    embeddings = centres[labels] + 0.01 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    groups = {0: "latin", 1: "latin", 2: "greek", 3: "greek"}
    assert one_shot_accuracy(embeddings, labels, ways=2, draws=200, class_groups=groups) == 1.0
    assert one_shot_accuracy(embeddings, labels, ways=2, draws=200) < 0.95  # mixed draws pair 0 with 2
    with pytest.raises(ValueError, match="within-group 3-way"):
        one_shot_accuracy(embeddings, labels, ways=3, class_groups=groups)
