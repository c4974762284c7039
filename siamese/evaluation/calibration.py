"""Verdict thresholds chosen on validation data, the error rates they give, and the verdict rule itself.

The rule lives here once: a pair is "same" when the distance between its embeddings is at or
below the threshold. Thresholds and the gallery's caution margin are chosen on validation
images only (classes the model did not train on and that the test set does not hold, where the
data allows); the test set is used for nothing but measuring how those choices do.
"""

from __future__ import annotations

import numpy as np
import torch

from siamese.distances import pairwise_distances
from siamese.evaluation.verification import distance_histogram, pair_distances, roc_metrics

# The stricter operating point reported beside the EER threshold: at most 1% false accepts.
TARGET_FALSE_ACCEPT = 0.01
# The caution margin flags this share of the wrong gallery answers seen on validation.
CAUTION_SHARE = 0.9


def error_rates(distances: np.ndarray, same: np.ndarray, threshold: float) -> dict:
    """False-accept rate, false-reject rate and accuracy of "same when distance <= threshold" on these pairs."""
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    genuine, impostor = int(same.sum()), int((~same).sum())
    if genuine == 0 or impostor == 0:
        raise ValueError(f"need both genuine and impostor pairs, got {genuine} and {impostor}")
    accepted = distances <= threshold
    false_accepts = int((accepted & ~same).sum())
    false_rejects = int((~accepted & same).sum())
    return {
        "false_accept_rate": false_accepts / impostor,
        "false_reject_rate": false_rejects / genuine,
        "accuracy": 1.0 - (false_accepts + false_rejects) / len(distances),
        "genuine_pairs": genuine,
        "impostor_pairs": impostor,
    }


def threshold_for_false_accept(distances: np.ndarray, same: np.ndarray, target: float) -> float:
    """The largest threshold whose false-accept rate on these pairs is at most `target`.

    With n impostor pairs, floor(target * n) of them may be accepted: the threshold falls midway
    between the last impostor distance allowed in and the first one kept out.
    """
    if not 0.0 <= target < 1.0:
        raise ValueError(f"the target false-accept rate must be in [0, 1), got {target}")
    impostor = np.sort(np.asarray(distances, dtype=np.float64)[~np.asarray(same, dtype=bool)])
    if len(impostor) == 0:
        raise ValueError("need impostor pairs to set a false-accept threshold")
    allowed = int(np.floor(target * len(impostor)))
    first_out = impostor[allowed]
    if allowed == 0:
        return float(np.nextafter(first_out, -np.inf))
    return float((impostor[allowed - 1] + first_out) / 2)


def simulate_galleries(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    references_per_class: int = 3,
    known_share: float = 0.5,
    draws: int = 50,
    seed: int = 0,
) -> dict:
    """Open-set galleries drawn from labelled embeddings, for calibrating and scoring gallery answers.

    Each draw takes `known_share` of the classes as the enrolled people, enrols
    `references_per_class` random images of each, and probes with every other image: images of
    enrolled classes are "known" probes, images of the other classes "unknown" ones. Returns, per
    probe, numpy arrays: the nearest reference's distance, whether its label is the probe's, the
    margin (distance to the nearest reference of another label minus the nearest distance), and
    whether the probe's class is enrolled.
    """
    labels = labels.cpu()
    embeddings = embeddings.float().cpu()
    classes = [c for c in torch.unique(labels).tolist() if int((labels == c).sum()) > references_per_class]
    if len(classes) < 3:
        raise ValueError(
            f"open-set galleries need at least 3 classes with more than {references_per_class} images, "
            f"got {len(classes)}"
        )
    known_count = min(max(2, round(known_share * len(classes))), len(classes) - 1)
    generator = torch.Generator().manual_seed(seed)
    best, correct, margin, known = [], [], [], []
    for _ in range(draws):
        order = torch.randperm(len(classes), generator=generator).tolist()
        enrolled = [classes[i] for i in order[:known_count]]
        references = []
        for label in enrolled:
            members = torch.nonzero(labels == label).flatten()
            references.append(members[torch.randperm(len(members), generator=generator)[:references_per_class]])
        references = torch.cat(references)  # (R,)
        probe_mask = torch.ones(len(labels), dtype=torch.bool)
        probe_mask[references] = False
        probe_mask &= torch.isin(labels, torch.tensor(classes))
        probes = torch.nonzero(probe_mask).flatten()  # (P,)
        distances = pairwise_distances(embeddings[probes], embeddings[references])  # (P, R)
        reference_labels = labels[references]  # (R,)
        nearest_distance, nearest = distances.min(dim=1)  # (P,), (P,)
        nearest_label = reference_labels[nearest]  # (P,)
        other_label = reference_labels.unsqueeze(0) != nearest_label.unsqueeze(1)  # (P, R)
        runner_up = torch.where(other_label, distances, torch.full_like(distances, float("inf"))).min(dim=1).values
        best.append(nearest_distance)
        correct.append(nearest_label == labels[probes])
        margin.append(runner_up - nearest_distance)
        known.append(torch.isin(labels[probes], torch.tensor(enrolled)))
    return {
        "best_distance": torch.cat(best).numpy().astype(np.float64),
        "correct": torch.cat(correct).numpy(),
        "margin": torch.cat(margin).numpy().astype(np.float64),
        "known": torch.cat(known).numpy(),
    }


def gallery_threshold(galleries: dict) -> float:
    """The "no match" threshold for galleries: where the share of known probes not named correctly
    equals the share of unknown probes named as someone (the open-set equal-error point).

    A pair threshold is too loose here: an unknown face is compared with every enrolled image, so
    the nearest of many impostors falls within a pair threshold far more often than one impostor.
    """
    best, known, correct = galleries["best_distance"], galleries["known"], galleries["correct"]
    if not known.any() or known.all():
        raise ValueError("need both known and unknown probes to set a gallery threshold")
    candidates = np.unique(best)  # (T,) sorted
    known_right = np.sort(best[known & correct])
    unknown = np.sort(best[~known])
    # Rates at each candidate t, with "accepted" meaning distance <= t.
    identified = np.searchsorted(known_right, candidates, side="right") / known.sum()
    false_alarm = np.searchsorted(unknown, candidates, side="right") / len(unknown)
    gap = np.abs((1.0 - identified) - false_alarm)
    return float(candidates[int(np.argmin(gap))])


def caution_margin(galleries: dict, threshold: float, share: float = CAUTION_SHARE) -> float | None:
    """The margin below which `share` of the wrong accepted gallery answers fall (None if there were none).

    A wrong accepted answer is a probe within the threshold whose nearest label is not its own:
    a known person misnamed, or an unknown person named as someone enrolled.
    """
    accepted = galleries["best_distance"] <= threshold
    wrong = accepted & ~galleries["correct"]
    if not wrong.any():
        return None
    return float(np.quantile(galleries["margin"][wrong], share))


def open_set_rates(galleries: dict, threshold: float, margin: float | None = None) -> dict:
    """How simulated galleries fare at `threshold`: known people named correctly, unknown people turned away.

    `known_identified`: share of known probes whose nearest label is right and within the threshold.
    `unknown_rejected`: share of unknown probes whose nearest reference lies beyond it. With a
    caution `margin`, also the share of accepted answers flagged, right and wrong apart.
    """
    known, correct = galleries["known"], galleries["correct"]
    accepted = galleries["best_distance"] <= threshold
    rates = {
        "known_identified": float((accepted & correct)[known].mean()) if known.any() else None,
        "unknown_rejected": float((~accepted)[~known].mean()) if (~known).any() else None,
        "known_probes": int(known.sum()),
        "unknown_probes": int((~known).sum()),
    }
    if margin is not None:
        flagged = galleries["margin"] < margin
        right, wrong = accepted & correct, accepted & ~correct
        rates["right_answers_cautioned"] = float(flagged[right].mean()) if right.any() else None
        rates["wrong_answers_cautioned"] = float(flagged[wrong].mean()) if wrong.any() else None
    return rates


def calibrate(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    measured_on: str,
    target_false_accept: float = TARGET_FALSE_ACCEPT,
    references_per_class: int = 3,
    open_set: bool = True,
    seed: int = 0,
) -> dict:
    """The calibration a model carries in config.json, from embeddings of validation images only.

    `threshold` is the validation equal-error-rate threshold; `threshold_strict` keeps validation
    false accepts at or below `target_false_accept`. With `open_set`, simulated validation galleries
    set `gallery_threshold` (the "no match" distance) and `caution_margin`. Test figures are added
    later by `measure_on_test`, never used here.
    """
    distances, same = pair_distances(embeddings, labels, seed=seed)
    roc = roc_metrics(distances, same)
    threshold = roc["threshold_eer"]
    strict = threshold_for_false_accept(distances, same, target_false_accept)
    calibration = {
        "distance": "euclidean",
        "rule": "same when distance <= threshold",
        "threshold": threshold,
        "threshold_strict": strict,
        "target_false_accept_rate": target_false_accept,
        "measured_on": measured_on,
        "validation": {
            "roc_auc": roc["roc_auc"],
            "eer": roc["eer"],
            "at_threshold": error_rates(distances, same, threshold),
            "at_threshold_strict": error_rates(distances, same, strict),
        },
        "distance_histogram": distance_histogram(distances, same),
    }
    if open_set:
        try:
            galleries = simulate_galleries(embeddings, labels, references_per_class=references_per_class, seed=seed)
        except ValueError:
            galleries = None  # too few validation classes for a gallery: no caution margin
        if galleries is not None:
            open_threshold = gallery_threshold(galleries)
            margin = caution_margin(galleries, open_threshold)
            calibration["gallery_threshold"] = open_threshold
            calibration["caution_margin"] = margin
            calibration["caution_share"] = CAUTION_SHARE
            calibration["validation"]["open_set"] = open_set_rates(galleries, open_threshold, margin)
    return calibration


def measure_on_test(embeddings: torch.Tensor, labels: torch.Tensor, calibration: dict, open_set: bool, seed: int = 0):
    """Test figures at the stored thresholds: error rates at each, and open-set gallery rates.

    Nothing here changes the calibration: it measures it on images it was not chosen on.
    """
    distances, same = pair_distances(embeddings, labels, seed=seed)
    report = {
        "at_threshold": error_rates(distances, same, calibration["threshold"]),
        "at_threshold_strict": error_rates(distances, same, calibration["threshold_strict"]),
    }
    if open_set:
        try:
            galleries = simulate_galleries(embeddings, labels, seed=seed)
        except ValueError:
            return report
        report["open_set"] = open_set_rates(
            galleries, stored_gallery_threshold(calibration), calibration.get("caution_margin")
        )
    return report


def stored_gallery_threshold(calibration: dict | None) -> float | None:
    """The "no match" distance a model's galleries use: its own `gallery_threshold`, else (a model calibrated
    without validation galleries) the pair `threshold`; None for an uncalibrated model."""
    calibration = calibration or {}
    return calibration.get("gallery_threshold", calibration.get("threshold"))


def verdict(distance: float, calibration: dict | None) -> dict:
    """The verdict for one pair distance: same or not, and the error rates measured at that threshold.

    Returns `same` (None without a calibrated threshold), `distance`, `threshold` and, when the
    calibration holds test figures, the expected false-accept and false-reject rates.
    """
    calibration = calibration or {}
    threshold = calibration.get("threshold")
    if threshold is None:
        return {"same": None, "distance": float(distance), "threshold": None}
    expected = (calibration.get("test") or {}).get("at_threshold") or {}
    return {
        "same": bool(distance <= threshold),
        "distance": float(distance),
        "threshold": float(threshold),
        "false_accept_rate": expected.get("false_accept_rate"),
        "false_reject_rate": expected.get("false_reject_rate"),
    }


# The out-of-distribution limit: this quantile of the references' own leave-one-out nearest distances.
OUT_OF_DISTRIBUTION_QUANTILE = 0.99


def nearest_reference_distances(embeddings: torch.Tensor, references: torch.Tensor) -> np.ndarray:
    """Distance (M,) from each embedding (M, D) to its nearest reference embedding (R, D)."""
    if embeddings.ndim != 2 or references.ndim != 2 or embeddings.shape[1] != references.shape[1]:
        raise ValueError(
            f"expected embeddings (M, D) and references (R, D), got {tuple(embeddings.shape)} and "
            f"{tuple(references.shape)}"
        )
    if references.shape[0] == 0:
        raise ValueError("need at least one reference embedding")
    # Direct differences in float64: the |a|^2 + |b|^2 - 2ab form loses the small distances to rounding.
    distances = torch.cdist(embeddings.detach().double().cpu(), references.detach().double().cpu())  # (M, R)
    return distances.min(dim=1).values.numpy()  # (M,)


def out_of_distribution_limit(references: torch.Tensor, quantile: float = OUT_OF_DISTRIBUTION_QUANTILE) -> float:
    """The nearest-reference distance beyond which an input looks unlike the references.

    Each reference is held out in turn and its distance to the nearest other reference measured;
    the limit is the `quantile` of those distances, so about 1% of images like the references
    (at the default 0.99) lie beyond it.
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    if references.ndim != 2 or references.shape[0] < 2:
        raise ValueError(f"need at least 2 reference embeddings of shape (R, D), got {tuple(references.shape)}")
    references = references.detach().double().cpu()
    distances = torch.cdist(references, references)  # (R, R)
    distances.fill_diagonal_(float("inf"))  # leave each reference out of its own neighbours
    held_out = distances.min(dim=1).values.numpy()  # (R,)
    return float(np.quantile(held_out, quantile))
