"""The model card: Hub metadata that parses back, and a body that shows exactly the measured figures."""

from __future__ import annotations

import yaml
from huggingface_hub import ModelCard

from siamese.modeling.card import render_model_card

COMMAND = "python train.py --preset mnist --epochs 5 --out runs/mnist"
DIGITS_CONFIG = {
    "architecture": "convnet",
    "embedding_dim": 64,
    "in_channels": 1,
    "image_size": [28, 28],
    "widths": [32, 64, 128],
    "dropout": 0.0,
    "normalize": False,
    "preprocessing": {"kind": "digits", "grayscale": True, "size": [28, 28], "mean": 0.0, "std": 1.0},
    "calibration": {
        "threshold": 0.8123,
        "threshold_strict": 0.6001,
        "target_false_accept_rate": 0.01,
        "distance": "euclidean",
        "measured_on": "600 validation images",
        "test": {
            "at_threshold": {
                "false_accept_rate": 0.0301,
                "false_reject_rate": 0.0456,
                "accuracy": 0.9689,
                "genuine_pairs": 1000,
                "impostor_pairs": 9000,
            },
            "at_threshold_strict": {
                "false_accept_rate": 0.0099,
                "false_reject_rate": 0.1502,
                "accuracy": 0.9761,
                "genuine_pairs": 1000,
                "impostor_pairs": 9000,
            },
        },
    },
    "training": {"data": "mnist", "split": "official", "command": COMMAND},
}
DIGITS_METRICS = {
    "task": "digits",
    "dataset": {
        "name": "mnist",
        "source": "torchvision MNIST",
        "train_size": 60000,
        "test_size": 10000,
        "test": "the official MNIST test set",
    },
    "test": {
        "knn_accuracy": 0.99123,
        "knn_k": 5,
        "precision_at_1": 0.98871,
        "map_at_r": 0.97351,
        "roc_auc": 0.99654,
        "eer": 0.02417,
        "one_shot_accuracy": 0.98012,
        "threshold": 0.8123,
        "false_accept_rate": 0.0301,
        "false_reject_rate": 0.0456,
        "one_shot_ways": 10,
    },
    "training": {"epochs": 5, "seconds": 55.2, "device": "cpu", "precision": "fp32", "command": COMMAND},
    "history": [{"epoch": 1, "loss": 0.1234, "knn_accuracy": 0.97}, {"epoch": 2, "loss": 0.0567, "knn_accuracy": 0.98}],
}
FACES_METRICS = {
    "task": "faces",
    "dataset": {
        "name": "att_faces",
        "train_size": 300,
        "test_size": 100,
        "test": "all 10 photos of each of the 10 held-out subjects",
        "test_classes": ["s5", "s12", "s40"],
    },
    "test": {"roc_auc": 0.9512, "eer": 0.1133, "one_shot_accuracy": 0.874, "one_shot_ways": 5},
}


def front_matter(card_text: str) -> dict:
    _, block, _ = card_text.split("---\n", 2)
    return yaml.safe_load(block)


def test_card_metadata_parses_back_with_library_tags_and_dataset():
    text = render_model_card(DIGITS_CONFIG, DIGITS_METRICS, COMMAND, repo_id="someone/siamese-mnist")
    card = ModelCard(text)
    assert card.data.library_name == "siamese-similarity"
    assert card.data.license == "mit"
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert {"siamese-network", "metric-learning", "image-similarity", "mnist"} <= set(card.data.tags)
    assert card.data.datasets == ["ylecun/mnist"]
    metadata = front_matter(text)
    assert metadata["library_name"] == "siamese-similarity"
    assert metadata["model-index"][0]["name"] == "siamese-mnist"


def test_card_eval_results_carry_the_measured_values_and_no_thresholds():
    card = ModelCard(render_model_card(DIGITS_CONFIG, DIGITS_METRICS, COMMAND))
    results = {result.metric_type: result.metric_value for result in card.data.eval_results}
    expected = {"knn_accuracy", "precision_at_1", "map_at_r", "roc_auc", "eer", "one_shot_accuracy"}
    expected |= {"false_accept_rate", "false_reject_rate"}  # test rates at the threshold chosen on validation
    assert results == {key: DIGITS_METRICS["test"][key] for key in expected}


def test_card_body_shows_measured_metrics_as_percentages_and_the_command():
    text = render_model_card(DIGITS_CONFIG, DIGITS_METRICS, COMMAND)
    for line in [
        "| kNN accuracy (k = 5) | 99.12% |",
        "| Precision@1 | 98.87% |",
        "| MAP@R | 97.35% |",
        "| ROC AUC (same vs different pairs) | 99.65% |",
        "| Equal error rate (EER) | 2.42% |",
        "| One-shot accuracy (10-way) | 98.01% |",
        "| False-accept rate at the stored threshold | 3.01% |",
        "| False-reject rate at the stored threshold | 4.56% |",
        "| Stored threshold (chosen on validation) | 0.8123 |",
    ]:
        assert line in text
    assert f"```bash\n{COMMAND}\n```" in text
    assert "**0.8123**" in text  # the calibrated threshold from config.json
    assert "from siamese import SiameseModel" in text and 'print(model.verify("a.png", "b.png"))' in text
    assert "the official MNIST test set" in text
    assert "Trained for 5 epochs, 55.2 s, on cpu, in fp32." in text


def test_card_reports_test_error_rates_at_the_thresholds_chosen_on_validation():
    text = render_model_card(DIGITS_CONFIG, DIGITS_METRICS, COMMAND)
    assert "validation pairs: 600 validation images. The test set played no part in choosing it." in text
    assert "| Equal error on validation | 0.8123 | 3.01% | 4.56% | 96.89% |" in text
    assert "| At most 1% false accepts on validation | 0.6001 | 0.99% | 15.02% | 97.61% |" in text
    assert "1,000 same-class and 9,000 different-class test pairs" in text
    assert "thresholds chosen on validation" in text


def test_card_leaves_out_metrics_that_were_not_measured():
    text = render_model_card({**DIGITS_CONFIG, "calibration": {}}, FACES_METRICS, COMMAND)
    assert "kNN accuracy" not in text and "MAP@R" not in text and "Precision@1" not in text
    assert "Verification threshold" not in text
    assert "| One-shot accuracy (5-way) | 87.40% |" in text
    assert "| Equal error rate (EER) | 11.33% |" in text


def test_faces_card_names_unseen_subjects_and_consent_limits_without_mnist_metadata():
    text = render_model_card(DIGITS_CONFIG | {"preprocessing": {"kind": "faces"}}, FACES_METRICS, COMMAND)
    card = ModelCard(text)
    assert "faces" in card.data.tags and "mnist" not in card.data.tags
    assert card.data.datasets is None
    assert "never seen in training: s5, s12, s40" in text
    assert "consent" in text


def test_card_renders_with_empty_metrics():
    text = render_model_card(DIGITS_CONFIG, {}, COMMAND)
    card = ModelCard(text)
    assert card.data.eval_results is None
    assert "## Results" not in text
    assert COMMAND in text
