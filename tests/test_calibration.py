"""Thresholds chosen on validation: error rates against plain loops, the open-set rules, and no test leak."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siamese.data.datasets import ImageSet, Splits
from siamese.evaluation.calibration import (
    caution_margin,
    error_rates,
    gallery_threshold,
    open_set_rates,
    simulate_galleries,
    threshold_for_false_accept,
    verdict,
)
from siamese.evaluation.verification import pair_distances, roc_metrics
from siamese.search.gallery import Gallery
from siamese.training.config import build_config
from siamese.training.loop import train


def random_pairs(seed: int = 0, count: int = 400):
    rng = np.random.default_rng(seed)
    same = rng.random(count) < 0.3
    distances = np.where(same, rng.normal(0.5, 0.2, count), rng.normal(1.0, 0.2, count))
    return distances, same


def test_error_rates_match_plain_loops_and_count_the_threshold_itself_as_same():
    distances, same = random_pairs()
    threshold = float(distances[7])  # a pair exactly at the threshold is "same"
    false_accepts = false_rejects = genuine = impostor = 0
    for distance, is_same in zip(distances, same, strict=True):
        called_same = distance <= threshold
        genuine += is_same
        impostor += not is_same
        false_accepts += called_same and not is_same
        false_rejects += is_same and not called_same
    rates = error_rates(distances, same, threshold)
    assert rates["false_accept_rate"] == pytest.approx(false_accepts / impostor)
    assert rates["false_reject_rate"] == pytest.approx(false_rejects / genuine)
    assert rates["accuracy"] == pytest.approx(1 - (false_accepts + false_rejects) / len(distances))


def test_strict_threshold_is_the_largest_that_keeps_false_accepts_within_the_target():
    distances, same = random_pairs(seed=1, count=2000)
    for target in (0.0, 0.01, 0.05):
        threshold = threshold_for_false_accept(distances, same, target)
        assert error_rates(distances, same, threshold)["false_accept_rate"] <= target
        next_impostor = np.sort(distances[~same][distances[~same] > threshold])[0]
        assert error_rates(distances, same, next_impostor)["false_accept_rate"] > target


def test_gallery_threshold_balances_missed_known_against_named_unknown_probes():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(12, 8, generator=generator) * 2
    labels = torch.arange(12).repeat_interleave(6)
    embeddings = centres[labels] + torch.randn(len(labels), 8, generator=generator)
    galleries = simulate_galleries(embeddings, labels, references_per_class=2, draws=5, seed=0)
    threshold = gallery_threshold(galleries)

    def gap(t):
        rates = open_set_rates(galleries, t)
        return abs((1 - rates["known_identified"]) - (1 - rates["unknown_rejected"]))

    candidates = np.unique(galleries["best_distance"])
    assert gap(threshold) == pytest.approx(min(gap(t) for t in candidates))


def test_simulated_galleries_match_a_plain_nearest_neighbour_loop():
    generator = torch.Generator().manual_seed(3)
    labels = torch.arange(6).repeat_interleave(4)
    embeddings = torch.randn(len(labels), 5, generator=generator)
    galleries = simulate_galleries(embeddings, labels, references_per_class=2, draws=1, seed=7)
    # Replay the same draw: the enrolled classes and references come from the same seeded generator.
    replay = torch.Generator().manual_seed(7)
    classes = list(range(6))
    order = torch.randperm(6, generator=replay).tolist()
    enrolled = [classes[i] for i in order[:3]]
    references = []
    for label in enrolled:
        members = torch.nonzero(labels == label).flatten()
        references += members[torch.randperm(len(members), generator=replay)[:2]].tolist()
    probes = [index for index in range(len(labels)) if index not in references]
    for position, probe in enumerate(probes):
        distances = {ref: float(torch.dist(embeddings[probe], embeddings[ref])) for ref in references}
        nearest = min(distances, key=distances.get)
        others = [d for ref, d in distances.items() if labels[ref] != labels[nearest]]
        assert galleries["best_distance"][position] == pytest.approx(distances[nearest], abs=1e-5)
        assert galleries["correct"][position] == (labels[nearest] == labels[probe])
        assert galleries["margin"][position] == pytest.approx(min(others) - distances[nearest], abs=1e-5)
        assert galleries["known"][position] == (int(labels[probe]) in enrolled)


def test_caution_margin_flags_the_chosen_share_of_wrong_accepted_answers():
    galleries = {
        "best_distance": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 2.0]),
        "correct": np.array([True, False, False, False, True, False]),
        "margin": np.array([0.9, 0.05, 0.1, 0.2, 0.8, 0.01]),
        "known": np.array([True, True, False, True, True, False]),
    }
    margin = caution_margin(galleries, threshold=1.0, share=0.5)
    assert margin == pytest.approx(np.quantile([0.05, 0.1, 0.2], 0.5))  # the probe at 2.0 is rejected anyway
    assert caution_margin({**galleries, "correct": np.ones(6, dtype=bool)}, threshold=1.0) is None


def test_open_set_gallery_says_no_match_beyond_the_threshold_and_cautions_a_near_tie():
    references = torch.tensor([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    gallery = Gallery(references, ["alice", "bob", "carol"], ["a.png", "b.png", "c.png"])
    far_away = gallery.rank(torch.tensor([10.0, -10.0]), threshold=2.0, caution_margin=0.3)
    assert not far_away.is_match and far_away.best_label is None and not far_away.caution
    near_tie = gallery.rank(torch.tensor([0.0, 0.45]), threshold=2.0, caution_margin=0.3)
    assert near_tie.is_match and near_tie.best_label == "alice" and near_tie.caution
    assert near_tie.margin == pytest.approx(0.1)
    clear = gallery.rank(torch.tensor([0.0, -0.2]), threshold=2.0, caution_margin=0.3)
    assert clear.is_match and clear.best_label == "alice" and not clear.caution


def test_verdict_is_same_at_or_below_the_threshold_and_carries_the_measured_rates():
    calibration = {"threshold": 0.5, "test": {"at_threshold": {"false_accept_rate": 0.02, "false_reject_rate": 0.03}}}
    assert verdict(0.5, calibration)["same"] is True
    assert verdict(0.5000001, calibration)["same"] is False
    assert verdict(0.1, calibration)["false_accept_rate"] == 0.02
    assert verdict(0.1, {})["same"] is None


def blob_set(seed: int, classes: int, per_class: int, names: list[str]) -> ImageSet:
    """Tiny 8x8 images: each class a bright square at its own place, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 40, (classes * per_class, 1, 8, 8), generator=generator, dtype=torch.uint8)
    labels = torch.arange(classes).repeat_interleave(per_class)
    for index, label in enumerate(labels.tolist()):
        row, column = divmod(label % 9, 3)
        images[index, 0, row * 2 : row * 2 + 3, column * 2 : column * 2 + 3] = 220
    return ImageSet(images, labels, names)


def test_thresholds_come_from_validation_and_the_test_split_never_reaches_calibration(tmp_path):
    validation = blob_set(1, 4, 6, ["v0", "v1", "v2", "v3"])
    test = blob_set(2, 4, 6, ["t0", "t1", "t2", "t3"])
    # Scramble the test labels: a threshold fitted on the test pairs would differ from the validation one.
    test = ImageSet(
        test.images, test.labels[torch.randperm(len(test.labels), generator=torch.Generator())], test.class_names
    )
    splits = Splits(
        blob_set(0, 6, 6, [f"c{index}" for index in range(6)]),
        test,
        {"kind": "folder", "grayscale": True, "size": [8, 8], "mean": 0.5, "std": 0.5},
        {"name": "blobs"},
        validation,
    )
    config = build_config(
        {
            "dataset": "folder",
            "preset": "faces",
            "parts": 0,
            "embedding_dim": 8,
            "widths": [4],
            "classes_per_batch": 3,
            "samples_per_class": 2,
            "epochs": 1,
            "precision": "fp32",
            "progress": False,
            "one_shot_draws": 2,
            "out": str(tmp_path / "model"),
        }
    )
    result = train(config, splits)
    validation_embeddings = result.model.encode(validation.images, batch_size=1024)
    test_embeddings = result.model.encode(test.images, batch_size=1024)
    from_validation = roc_metrics(*pair_distances(validation_embeddings, validation.labels))["threshold_eer"]
    from_test = roc_metrics(*pair_distances(test_embeddings, test.labels))["threshold_eer"]
    assert result.model.calibration["threshold"] == pytest.approx(from_validation)
    assert abs(from_test - from_validation) > 1e-6  # so the assertion above would fail on a leak
    assert "v0, v1, v2, v3" in result.model.calibration["measured_on"]
    assert result.metrics["threshold"] == result.model.calibration["threshold"]
    assert "threshold_eer" not in result.metrics and "best_accuracy" not in result.metrics


def test_digit_validation_images_are_a_seeded_share_of_each_class_never_trained_on():
    from siamese.data.datasets import hold_out_per_class

    image_set = blob_set(0, 5, 20, [str(index) for index in range(5)])
    image_set.images[:, 0, 7, 7] = torch.arange(len(image_set), dtype=torch.uint8)  # a unique mark per image
    kept, held = hold_out_per_class(image_set, 0.15, seed=4)
    assert torch.bincount(held.labels).tolist() == [3] * 5  # round(0.15 * 20) of each class
    kept_marks = set(kept.images[:, 0, 7, 7].tolist())
    held_marks = set(held.images[:, 0, 7, 7].tolist())
    assert not kept_marks & held_marks and len(kept_marks | held_marks) == len(image_set)
    again_kept, again_held = hold_out_per_class(image_set, 0.15, seed=4)
    assert torch.equal(again_held.images, held.images)
