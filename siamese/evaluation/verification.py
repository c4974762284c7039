"""Verification and one-shot evaluation: is this pair the same class, and who is this among N?

Distances are Euclidean (see `siamese.distances`): a pair at or below a threshold is called
"same". Everything here works on embeddings of a held-out set.
"""

from __future__ import annotations

import numpy as np
import torch

from siamese.distances import pairwise_distances


def pair_distances(
    embeddings: torch.Tensor, labels: torch.Tensor, max_pairs: int = 2_000_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Distances and same-class flags of all i < j pairs, or of a seeded sample of `max_pairs` of them."""
    count = embeddings.shape[0]
    total = count * (count - 1) // 2
    if total == 0:
        raise ValueError("verification needs at least two embeddings")
    embeddings = embeddings.float().cpu()
    labels = labels.cpu()
    if total <= max_pairs:
        first, second = torch.triu_indices(count, count, offset=1)  # (P,), (P,)
    else:
        generator = torch.Generator().manual_seed(seed)
        first = torch.randint(count, (max_pairs,), generator=generator)
        second = torch.randint(count - 1, (max_pairs,), generator=generator)
        second = second + (second >= first).long()  # uniform over j != i
    distances = torch.empty(first.shape[0])
    block = 200_000
    for start in range(0, first.shape[0], block):
        a, b = first[start : start + block], second[start : start + block]
        distances[start : start + block] = (embeddings[a] - embeddings[b]).pow(2).sum(dim=1).sqrt()
    same = labels[first] == labels[second]
    return distances.numpy().astype(np.float64), same.numpy()


def roc_metrics(distances: np.ndarray, same: np.ndarray) -> dict:
    """ROC AUC, equal error rate and the distance threshold at the EER.

    The score is the negated distance. AUC counts a tie between a genuine and an impostor pair as
    half, like scikit-learn. The EER is interpolated where the false accept and false reject
    rates cross.
    """
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    genuine, impostor = int(same.sum()), int((~same).sum())
    if genuine == 0 or impostor == 0:
        raise ValueError(f"need both genuine and impostor pairs, got {genuine} and {impostor}")
    # AUC by ranks (Mann-Whitney): the chance a genuine pair is closer than an impostor pair.
    order = np.argsort(distances, kind="mergesort")
    sorted_distances = distances[order]
    ranks = np.empty(len(distances))
    unique, first_index, counts = np.unique(sorted_distances, return_index=True, return_counts=True)
    average_rank = first_index + (counts + 1) / 2.0  # 1-based average rank per tie group
    ranks[order] = np.repeat(average_rank, counts)
    # Small distance = high score: genuine ranks counted from the top.
    genuine_rank_sum = ((len(distances) + 1) - ranks[same]).sum()
    auc = (genuine_rank_sum - genuine * (genuine + 1) / 2.0) / (genuine * impostor)

    # Rates at every distinct threshold t (call "same" when distance <= t).
    same_sorted = same[order]
    cumulative_genuine = np.cumsum(same_sorted)[first_index + counts - 1]  # accepted genuine at each t
    cumulative_impostor = np.cumsum(~same_sorted)[first_index + counts - 1]
    false_reject = np.concatenate([[1.0], 1.0 - cumulative_genuine / genuine])  # (T + 1,)
    false_accept = np.concatenate([[0.0], cumulative_impostor / impostor])
    thresholds = np.concatenate([[unique[0] - 1e-12], unique])
    crossing = int(np.argmax(false_accept >= false_reject))  # first t where FAR >= FRR
    if crossing == 0:
        eer, threshold = 0.0, float(thresholds[0])
    else:
        # Linear interpolation between the last point before and the first after the crossing.
        gap_before = false_reject[crossing - 1] - false_accept[crossing - 1]
        gap_after = false_accept[crossing] - false_reject[crossing]
        weight = gap_before / (gap_before + gap_after) if gap_before + gap_after > 0 else 0.0
        eer = float(
            (1 - weight) * (false_accept[crossing - 1] + false_reject[crossing - 1]) / 2
            + weight * (false_accept[crossing] + false_reject[crossing]) / 2
        )
        threshold = float((1 - weight) * thresholds[crossing - 1] + weight * thresholds[crossing])
        if false_reject[crossing] == 0 and false_accept[crossing] == 0 and crossing + 1 < len(thresholds):
            # Separated pairs: the edge of the genuine distances would reject the next slightly farther genuine
            # pair, so the threshold goes midway into the gap before the nearest impostor.
            threshold = float((thresholds[crossing] + thresholds[crossing + 1]) / 2)
    return {"roc_auc": float(auc), "eer": eer, "threshold_eer": max(threshold, 0.0)}


def best_accuracy_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The distance threshold that maximises plain accuracy over the given pairs, and that accuracy.

    The threshold is set midway between the deciding distance and the next larger one.
    """
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    order = np.argsort(distances, kind="mergesort")
    sorted_distances, sorted_same = distances[order], same[order]
    # Accepting the first k pairs (k = 0..N): correct = genuine accepted + impostors rejected.
    accepted_genuine = np.concatenate([[0], np.cumsum(sorted_same)])
    accepted_impostor = np.concatenate([[0], np.cumsum(~sorted_same)])
    correct = accepted_genuine + ((~same).sum() - accepted_impostor)
    # Only cut between different distances, so ties are never split.
    valid = np.ones(len(correct), dtype=bool)
    valid[1:-1] = sorted_distances[:-1] != sorted_distances[1:]
    best = int(np.argmax(np.where(valid, correct, -1)))
    if best == 0:
        threshold = sorted_distances[0] / 2
    elif best == len(distances):
        threshold = sorted_distances[-1] * 1.01
    else:
        threshold = (sorted_distances[best - 1] + sorted_distances[best]) / 2
    return float(threshold), float(correct[best] / len(distances))


def distance_histogram(distances: np.ndarray, same: np.ndarray, bins: int = 40) -> dict:
    """Genuine and impostor distance densities over shared bin edges, ready for JSON."""
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    edges = np.linspace(0.0, float(np.quantile(distances, 0.999)) * 1.05 + 1e-9, bins + 1)
    clipped = np.clip(distances, edges[0], edges[-1])
    genuine, _ = np.histogram(clipped[same], bins=edges, density=True)
    impostor, _ = np.histogram(clipped[~same], bins=edges, density=True)
    return {
        "edges": [round(float(edge), 6) for edge in edges],
        "genuine": [round(float(value), 6) for value in genuine],
        "impostor": [round(float(value), 6) for value in impostor],
    }


def one_shot_accuracy(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    ways: int | None = None,
    draws: int = 200,
    seed: int = 0,
    class_groups: dict[int, str] | None = None,
) -> float:
    """N-way one-shot identification: one random reference per class, every other image a query.

    Each draw picks `ways` classes (all when None) and one reference image for each; a query is
    right when its nearest reference has its class. The result is the mean over all queries of all
    draws. Classes need at least two images (one reference, one query). With `class_groups`
    (label -> group), each draw first picks a group with at least `ways` classes and then its
    classes from that group alone: the within-group task, where the classes are alike.
    """
    labels = labels.cpu()
    embeddings = embeddings.float().cpu()
    classes = [c for c in torch.unique(labels).tolist() if int((labels == c).sum()) >= 2]
    ways = len(classes) if ways is None else ways
    pools = [classes]
    if class_groups is not None:
        by_group: dict[str, list[int]] = {}
        for label in classes:
            by_group.setdefault(class_groups[label], []).append(label)
        pools = [members for _, members in sorted(by_group.items()) if len(members) >= ways]
        if not pools:
            raise ValueError(f"within-group {ways}-way one-shot needs a group with {ways} classes of 2+ images")
    if ways < 2 or ways > max(len(pool) for pool in pools):
        raise ValueError(f"{ways}-way one-shot needs {ways} classes with two or more images; have {len(classes)}")
    members = {c: torch.nonzero(labels == c).flatten() for c in classes}
    generator = torch.Generator().manual_seed(seed)
    correct = total = 0
    for _ in range(draws):
        pool = pools[int(torch.randint(len(pools), (1,), generator=generator))] if len(pools) > 1 else pools[0]
        chosen = [pool[i] for i in torch.randperm(len(pool), generator=generator)[:ways].tolist()]
        references = torch.stack(
            [members[c][torch.randint(len(members[c]), (1,), generator=generator)][0] for c in chosen]
        )  # (ways,)
        query_mask = torch.isin(labels, torch.tensor(chosen))
        query_mask[references] = False
        queries = torch.nonzero(query_mask).flatten()  # (Q,)
        nearest = pairwise_distances(embeddings[queries], embeddings[references]).argmin(dim=1)  # (Q,)
        predicted = torch.tensor(chosen)[nearest]
        correct += int((predicted == labels[queries]).sum())
        total += len(queries)
    return correct / total


def verification_report(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    ways: int | None = None,
    draws: int = 200,
    seed: int = 0,
    max_pairs: int = 2_000_000,
) -> dict:
    """Everything the model card and the app's verdict need, as plain JSON values."""
    distances, same = pair_distances(embeddings, labels, max_pairs=max_pairs, seed=seed)
    report = roc_metrics(distances, same)
    threshold, accuracy = best_accuracy_threshold(distances, same)
    class_count = len(torch.unique(labels))
    ways = min(ways or class_count, class_count)
    report.update(
        {
            "threshold_best_accuracy": threshold,
            "best_accuracy": accuracy,
            "one_shot_accuracy": one_shot_accuracy(embeddings, labels, ways=ways, draws=draws, seed=seed),
            "one_shot_ways": ways,
            "one_shot_draws": draws,
            "genuine_pairs": int(same.sum()),
            "impostor_pairs": int((~same).sum()),
            "distance_histogram": distance_histogram(distances, same),
        }
    )
    return report
