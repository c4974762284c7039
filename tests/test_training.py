"""The training loop on tiny synthetic data: it learns, checkpoints atomically and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from siamese.data.datasets import DIGITS_PREPROCESSING, ImageSet, Splits, class_balanced_batches
from siamese.modeling.losses import ContrastiveLoss
from siamese.training.checkpoint import CHECKPOINT_NAME
from siamese.training.config import build_config
from siamese.training.loop import train


def tiny_splits(per_class: int = 16, classes: int = 4) -> Splits:
    """Each class is a bright bar at its own position plus noise: learnable in a few steps."""
    generator = torch.Generator().manual_seed(0)

    def make(count: int) -> ImageSet:
        images = torch.randint(0, 60, (count * classes, 1, 12, 12), generator=generator, dtype=torch.uint8)
        labels = torch.arange(classes).repeat_interleave(count)
        for index, label in enumerate(labels.tolist()):
            images[index, 0, 2 * label : 2 * label + 3, :] = 255
        return ImageSet(images, labels, [str(c) for c in range(classes)])

    preprocessing = {**DIGITS_PREPROCESSING, "size": [12, 12]}
    return Splits(make(per_class), make(per_class // 2), preprocessing, {"name": "tiny", "source": "synthetic"})


def tiny_config(tmp_path, **overrides):
    values = {
        "dataset": "digits",
        "preset": "fast",
        "widths": [8, 16],
        "embedding_dim": 8,
        "classes_per_batch": 4,
        "samples_per_class": 4,
        "epochs": 3,
        "precision": "fp32",
        "device": "cpu",
        "progress": False,
        "one_shot_draws": 5,
        "out": str(tmp_path / "run"),
        **overrides,
    }
    return build_config(values)


def batch_loss(model, splits) -> float:
    model.eval()
    with torch.inference_mode():
        embeddings = model(splits.train.images.float() / 255)
        return float(ContrastiveLoss(margin=0.5)(embeddings, splits.train.labels))


def test_a_short_run_lowers_the_loss(tmp_path):
    splits = tiny_splits()
    config = tiny_config(tmp_path, epochs=4, augment="none")
    untrained = train(tiny_config(tmp_path / "zero", epochs=1), splits, stop_after_epochs=0).model
    trained = train(config, splits)
    assert batch_loss(trained.model, splits) < 0.5 * batch_loss(untrained, splits)
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert {"knn_accuracy", "roc_auc", "eer", "one_shot_accuracy"} <= set(trained.metrics)


def test_resume_after_an_interrupted_run_gives_the_same_weights(tmp_path):
    splits = tiny_splits()
    straight = train(tiny_config(tmp_path / "straight"), splits)
    interrupted_config = tiny_config(tmp_path / "interrupted")
    train(interrupted_config, splits, stop_after_epochs=2)  # as if killed after epoch 2
    checkpoint = tmp_path / "interrupted" / "run" / CHECKPOINT_NAME
    assert checkpoint.exists()
    assert not list(checkpoint.parent.glob("*.tmp"))
    resumed = train(tiny_config(tmp_path / "interrupted", resume=True), splits)
    assert [record["epoch"] for record in resumed.history] == [1, 2, 3]
    for (name, expected), (_, actual) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(expected, actual), f"{name} differs after resume"
    assert resumed.history[-1]["loss"] == pytest.approx(straight.history[-1]["loss"])


def test_resume_refuses_a_checkpoint_from_another_recipe(tmp_path):
    splits = tiny_splits()
    train(tiny_config(tmp_path), splits, stop_after_epochs=1)
    with pytest.raises(ValueError, match="lr"):
        train(tiny_config(tmp_path, resume=True, lr=0.5), splits)


def test_class_balanced_batches_hold_p_classes_of_k_images():
    labels = torch.arange(6).repeat_interleave(10)
    batches = list(class_balanced_batches(labels, 3, 4, torch.Generator().manual_seed(0)))
    assert len(batches) == 60 // 12
    for batch in batches:
        counts = torch.bincount(labels[batch], minlength=6)
        assert sorted(counts[counts > 0].tolist()) == [4, 4, 4]


def test_presets_and_explicit_flags():
    assert build_config({"dataset": "mnist"}).sampler == "balanced"
    tutorial = build_config({"dataset": "mnist", "preset": "tutorial"})
    assert (tutorial.batch_size, tutorial.lr, tutorial.epochs, tutorial.margin, tutorial.embedding_dim) == (
        32,
        1e-3,
        5,
        1.0,
        50,
    )
    assert build_config({"dataset": "mnist", "preset": "tutorial", "epochs": 1}).epochs == 1
    assert build_config({"dataset": "att_faces"}).preset == "faces"
    with pytest.raises(ValueError, match="unknown config fields"):
        build_config({"epochz": 3})


def test_part_embeddings_need_an_embedding_size_that_splits_evenly():
    assert build_config({"dataset": "folder", "parts": 4, "embedding_dim": 160}).parts == 4
    with pytest.raises(ValueError, match="must split into --parts \\+ 1 = 5 equal chunks"):
        build_config({"dataset": "folder", "parts": 4, "embedding_dim": 64})
    with pytest.raises(ValueError, match="--parts must be 0"):
        build_config({"dataset": "folder", "parts": -1})


@pytest.mark.parametrize(
    "change", [{"architecture": "tutorial"}, {"pooling": "flatten"}, {"normalize": False}], ids=str
)
def test_part_embeddings_with_a_network_that_cannot_have_them_is_a_clear_error(change):
    with pytest.raises(ValueError, match="add --parts 0"):
        build_config({"dataset": "att_faces", **change})
    assert build_config({"dataset": "att_faces", "parts": 0, **change}).parts == 0


def test_a_batch_asking_for_more_classes_than_there_are_trains_a_full_schedule(tmp_path):
    from siamese.data.datasets import ImageSet, Splits
    from siamese.training.config import build_config
    from siamese.training.loop import train

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (24, 1, 8, 8), generator=generator, dtype=torch.uint8)
    labels = torch.arange(3).repeat_interleave(8)  # 3 classes, while the batch asks for 10
    splits = Splits(ImageSet(images, labels, list("abc")), ImageSet(images, labels, list("abc")), {}, {"name": "toy"})
    config = build_config(
        {"dataset": "folder", "preset": "fast", "architecture": "convnet", "widths": [4], "embedding_dim": 4,
         "classes_per_batch": 10, "samples_per_class": 2, "epochs": 2, "schedule": "onecycle",
         "precision": "fp32", "progress": False, "eval_every": 0, "out": str(tmp_path / "m")}
    )  # fmt: skip
    result = train(config, splits, final_evaluation=False)  # OneCycleLR refuses a step beyond its total
    assert [record["epoch"] for record in result.history] == [1, 2]
