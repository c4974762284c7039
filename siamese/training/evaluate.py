"""Figures during and after training: validation per epoch, calibration on validation, the test report once."""

from __future__ import annotations

import torch

from siamese.data.datasets import Splits
from siamese.evaluation.calibration import calibrate, measure_on_test
from siamese.evaluation.retrieval import retrieval_metrics
from siamese.evaluation.verification import verification_report
from siamese.modeling.network import EmbeddingNet
from siamese.training.config import TrainConfig
from siamese.training.datasets import DATASETS


def evaluate(model: EmbeddingNet, splits: Splits, config: TrainConfig, precision: str, final: bool) -> dict:
    """Per-epoch figures on the validation set (the test set when there is none), or the final test report.

    Where classes are shared (digits), retrieval scores held-out images against the training
    images; for every data set, verification and one-shot figures come from pairs of held-out images.
    """
    held_out = splits.test if final or splits.validation is None else splits.validation
    if len(held_out) == 0 or len(torch.unique(held_out.labels)) < 2:
        return {}  # --test-fraction 0 and no validation: nothing held out to measure on
    metrics = {}
    if DATASETS.get(config.dataset).shares_classes:
        metrics.update(retrieval_metrics(model, splits.train, held_out, config.knn_k, precision))
        if not final:
            return metrics  # kNN is the per-epoch figure here; pair metrics only at the end
    embeddings = model.encode(held_out.images, batch_size=1024, precision=precision)  # (Q, D)
    labels = held_out.labels.cpu()
    ways = min(10, len(torch.unique(labels)))
    draws = config.one_shot_draws if final else max(1, config.one_shot_draws // 4)
    max_pairs = 2_000_000 if final else 200_000
    report = verification_report(embeddings, labels, ways=ways, draws=draws, seed=config.seed, max_pairs=max_pairs)
    # Thresholds fitted on these very pairs would flatter them: thresholds come from validation only.
    for key in ("threshold_eer", "threshold_best_accuracy", "best_accuracy"):
        report.pop(key, None)
    if not final:
        report.pop("distance_histogram", None)
    metrics.update(report)
    if final and model.calibration.get("threshold") is not None:
        open_set = not DATASETS.get(config.dataset).shares_classes
        measured = measure_on_test(embeddings, labels, model.calibration, open_set=open_set, seed=config.seed)
        model.calibration["test"] = measured
        metrics.update(_operating_point_figures(model.calibration, measured))
    return metrics


def calibrate_on_validation(model: EmbeddingNet, splits: Splits, config: TrainConfig, precision: str) -> dict:
    """The thresholds and caution margin, chosen on the validation images alone ({} without validation)."""
    validation = splits.validation
    if validation is None or len(validation) < 2 or len(torch.unique(validation.labels)) < 2:
        return {}
    embeddings = model.encode(validation.images, batch_size=1024, precision=precision)  # (V, D)
    if DATASETS.get(config.dataset).shares_classes:
        measured_on = f"{len(validation)} validation images ({splits.description.get('validation')})"
    else:
        names = ", ".join(sorted(validation.class_names))
        measured_on = f"{len(validation)} images of the validation classes {names}, unseen in training and testing"
    open_set = not DATASETS.get(config.dataset).shares_classes
    calibration = calibrate(embeddings, validation.labels.cpu(), measured_on, open_set=open_set, seed=config.seed)
    extra = splits.extra_validation
    if extra is not None and len(torch.unique(extra.labels)) >= 2:
        # The extra images are the last rows of the validation set: their pairs alone, at the thresholds just chosen.
        extra_embeddings = embeddings[len(validation) - len(extra) :]  # (E, D)
        calibration["validation"]["extra"] = {
            "source": splits.description["extra_validation"]["source"],
            "images": len(extra),
            "classes": len(extra.class_names),
            "at_threshold": measure_on_test(extra_embeddings, extra.labels.cpu(), calibration, open_set=False)[
                "at_threshold"
            ],
        }
    return calibration


def _operating_point_figures(calibration: dict, measured: dict) -> dict:
    """Flat metrics.json keys for the test figures at the stored thresholds."""
    at_threshold, at_strict = measured["at_threshold"], measured["at_threshold_strict"]
    figures = {
        "threshold": calibration["threshold"],
        "false_accept_rate": at_threshold["false_accept_rate"],
        "false_reject_rate": at_threshold["false_reject_rate"],
        "accuracy_at_threshold": at_threshold["accuracy"],
        "threshold_strict": calibration["threshold_strict"],
        "false_accept_rate_strict": at_strict["false_accept_rate"],
        "false_reject_rate_strict": at_strict["false_reject_rate"],
    }
    open_set = measured.get("open_set") or {}
    for key in ("known_identified", "unknown_rejected"):
        if open_set.get(key) is not None:
            figures[f"open_set_{key}"] = open_set[key]
    return figures
