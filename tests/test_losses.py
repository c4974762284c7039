"""Losses against plain Python loops over pairs and anchors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from siamese.modeling.losses import (
    ContrastiveLoss,
    CosFaceLoss,
    PairContrastiveLoss,
    PairwiseFromBatch,
    PartsLoss,
    TripletLoss,
    build_loss,
    pair_masks,
)


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))


def contrastive_by_loops(embeddings, labels, margin):
    total, count = 0.0, 0
    for i, j in itertools.combinations(range(len(labels)), 2):
        d = distance(embeddings[i], embeddings[j])
        total += d**2 if labels[i] == labels[j] else max(0.0, margin - d) ** 2
        count += 1
    return total / count


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [1.0, 2.5])
def test_contrastive_loss_matches_loops_over_all_pairs(seed, margin):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (12,), generator=generator)
    loss = ContrastiveLoss(margin=margin)(embeddings, labels)
    assert float(loss) == pytest.approx(contrastive_by_loops(embeddings, labels, margin), rel=1e-5)


def test_contrastive_loss_without_positive_pairs_is_finite_and_matches_loops():
    embeddings = torch.randn(6, 4) * 0.3
    labels = torch.arange(6)  # every sample its own class: no positive pair
    embeddings.requires_grad_(True)
    loss = ContrastiveLoss(margin=1.0)(embeddings, labels)
    assert torch.isfinite(loss)
    assert float(loss.detach()) == pytest.approx(contrastive_by_loops(embeddings.detach(), labels, 1.0), rel=1e-5)
    loss.backward()
    assert torch.isfinite(embeddings.grad).all()


def test_contrastive_loss_of_one_sample_is_zero_with_a_gradient():
    embeddings = torch.randn(1, 4, requires_grad=True)
    loss = ContrastiveLoss()(embeddings, torch.tensor([3]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.isfinite(embeddings.grad).all()


def test_coinciding_embeddings_give_finite_gradients():
    embeddings = torch.ones(4, 3, requires_grad=True)  # all distances exactly zero
    loss = ContrastiveLoss()(embeddings, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize("loss", [ContrastiveLoss(), TripletLoss(), PairwiseFromBatch()])
def test_wrong_shapes_give_clear_errors(loss):
    with pytest.raises(ValueError, match="embeddings must have shape"):
        loss(torch.randn(4, 2, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        loss(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))


def test_pair_masks_match_loops():
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    positive, negative = pair_masks(labels)
    for i, j in itertools.product(range(6), repeat=2):
        assert bool(positive[i, j]) == (i < j and labels[i] == labels[j])
        assert bool(negative[i, j]) == (i < j and labels[i] != labels[j])


def triplet_by_loops(embeddings, labels, margin):
    losses = []
    for anchor in range(len(labels)):
        positives = [
            distance(embeddings[anchor], embeddings[j])
            for j in range(len(labels))
            if j != anchor and labels[j] == labels[anchor]
        ]
        negatives = [
            distance(embeddings[anchor], embeddings[j]) for j in range(len(labels)) if labels[j] != labels[anchor]
        ]
        if positives and negatives:
            losses.append(max(0.0, max(positives) - min(negatives) + margin))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_hard_triplet_loss_matches_loops(seed):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(10, 4, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 3, 2])  # class 3 has no positive: left out
    loss = TripletLoss(margin=0.5)(embeddings, labels)
    assert float(loss) == pytest.approx(triplet_by_loops(embeddings, labels, 0.5), rel=1e-5)


def test_triplet_loss_without_valid_anchor_is_zero_with_a_gradient():
    embeddings = torch.randn(3, 4, requires_grad=True)
    loss = TripletLoss()(embeddings, torch.tensor([0, 1, 2]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert embeddings.grad is not None


def pair_loss_by_loops(first, second, pair_labels, margin, different_label):
    total = 0.0
    for a, b, label in zip(first, second, pair_labels, strict=True):
        d = distance(a, b)
        total += max(0.0, margin - d) ** 2 if int(label) == different_label else d**2
    return total / len(pair_labels)


@pytest.mark.parametrize("different_label", [1, 0])
def test_pair_loss_matches_loops_for_both_label_conventions(different_label):
    generator = torch.Generator().manual_seed(3)
    first = torch.randn(8, 5, generator=generator, dtype=torch.float64)
    second = torch.randn(8, 5, generator=generator, dtype=torch.float64)
    pair_labels = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1])
    loss = PairContrastiveLoss(margin=2.0, different_label=different_label)(first, second, pair_labels)
    expected = pair_loss_by_loops(first, second, pair_labels, 2.0, different_label)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_label_conventions_are_opposite():
    """The same pairs scored under the article's and the tutorial's convention flip roles."""
    first, second = torch.zeros(2, 2), torch.tensor([[0.5, 0.0], [3.0, 0.0]])
    article = PairContrastiveLoss(margin=2.0, different_label=1)
    tutorial = PairContrastiveLoss(margin=2.0, different_label=0)
    # Article: label 1 = different. Pair 0 (close) called different costs (2 - 0.5)^2; pair 1 (far) same costs 9.
    assert float(article(first, second, torch.tensor([1, 0]))) == pytest.approx((1.5**2 + 9.0) / 2)
    # Tutorial: label 1 = same, so the same tensor of labels means the opposite verdicts.
    assert float(tutorial(first, second, torch.tensor([1, 0]))) == pytest.approx((0.25 + 0.0) / 2)


def test_pairwise_from_batch_reads_interleaved_pairs():
    generator = torch.Generator().manual_seed(4)
    embeddings = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 3, 3, 4, 1])
    different = torch.tensor([0, 1, 0, 1])
    expected = pair_loss_by_loops(embeddings[0::2], embeddings[1::2], different, 2.0, 1)
    assert float(PairwiseFromBatch(margin=2.0)(embeddings, labels)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="even size"):
        PairwiseFromBatch()(embeddings[:5], labels[:5])


def test_build_loss_names_the_choices():
    assert isinstance(build_loss("triplet", 0.3), TripletLoss)
    with pytest.raises(ValueError, match="contrastive"):
        build_loss("arcface", 1.0)


def test_cosface_matches_a_per_sample_loop():
    torch.manual_seed(5)
    loss = CosFaceLoss(embedding_dim=4, class_count=3, margin=0.3, scale=10.0)
    embeddings = torch.randn(6, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    proxies = loss.proxies.detach().double()
    total = 0.0
    for embedding, label in zip(embeddings, labels.tolist(), strict=True):
        logits = []
        for c, proxy in enumerate(proxies):
            cosine = float(embedding @ proxy / (embedding.norm() * proxy.norm()))
            logits.append(10.0 * (cosine - (0.3 if c == label else 0.0)))
        top = max(logits)
        log_sum = top + math.log(sum(math.exp(value - top) for value in logits))
        total += log_sum - logits[label]
    assert float(loss(embeddings, labels).detach()) == pytest.approx(total / 6, rel=1e-5)


def test_cosface_learns_its_proxies_and_checks_labels():
    loss = CosFaceLoss(embedding_dim=4, class_count=3)
    embeddings = torch.randn(4, 4, requires_grad=True)
    value = loss(embeddings, torch.tensor([0, 1, 2, 0]))
    value.backward()
    assert torch.isfinite(value) and loss.proxies.grad is not None and embeddings.grad is not None
    with pytest.raises(ValueError, match="labels must lie in"):
        loss(embeddings, torch.tensor([0, 1, 3, 0]))


def test_parts_loss_is_the_mean_of_each_rescaled_chunks_loss_by_loops():
    generator = torch.Generator().manual_seed(3)
    chunks = torch.nn.functional.normalize(torch.randn(8, 3, 4, generator=generator, dtype=torch.float64), dim=2)
    embeddings = chunks.flatten(1) / 3**0.5  # (8, 12) as PartsNeck lays them out
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    loss = build_loss("contrastive", 0.7, embedding_dim=12, parts=2)
    assert isinstance(loss, PartsLoss) and len(loss.part_losses) == 3
    expected = sum(contrastive_by_loops(chunks[:, index], labels, 0.7) for index in range(3)) / 3
    assert float(loss(embeddings, labels)) == pytest.approx(expected, rel=1e-6)


def test_parts_loss_gives_each_chunk_its_own_learned_proxies():
    loss = build_loss("cosface", 0.35, embedding_dim=15, class_count=4, parts=4)
    assert [tuple(part.proxies.shape) for part in loss.part_losses] == [(4, 3)] * 5
    with pytest.raises(ValueError, match="must divide into parts"):
        build_loss("cosface", 0.35, embedding_dim=16, class_count=4, parts=4)


@pytest.mark.parametrize("name", ["contrastive", "triplet", "cosface", "pair"])
def test_losses_stay_in_fp32_inside_bf16_autocast(name):
    from siamese.modeling.losses import build_loss

    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    labels = torch.arange(8).repeat_interleave(2)
    loss = build_loss(name, 0.5 if name != "pair" else 2.0, embedding_dim=8, class_count=8)
    plain = loss(embeddings, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(embeddings, labels)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, plain, rtol=1e-6, atol=1e-7)
