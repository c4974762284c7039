"""The GPU path: one training step under bf16 and under fp16 with the gradient scaler. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from siamese.data.datasets import ImageSet, Splits
from siamese.training.config import build_config
from siamese.training.loop import train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
]


def toy_splits() -> Splits:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (64, 1, 28, 28), generator=generator, dtype=torch.uint8)
    labels = torch.arange(8).repeat_interleave(8)
    names = [str(index) for index in range(8)]
    return Splits(ImageSet(images, labels, names), ImageSet(images[:16], labels[:16], names), {}, {"name": "toy"})


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_one_gpu_training_step_is_finite_and_moves_the_weights(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    config = build_config(
        {"dataset": "mnist", "preset": "fast", "epochs": 1, "classes_per_batch": 8, "samples_per_class": 4,
         "precision": precision, "device": "cuda", "progress": False, "eval_every": 0, "out": str(tmp_path / "m")}
    )  # fmt: skip
    torch.manual_seed(0)
    from siamese.training.steps import build_model

    before = {name: value.clone() for name, value in build_model(config, toy_splits()).state_dict().items()}
    result = train(config, toy_splits(), final_evaluation=False)
    assert result.precision == precision and result.device.startswith("cuda")
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))
    after = result.model.state_dict()
    assert any(not torch.equal(before[name], after[name].cpu()) for name in before if before[name].is_floating_point())


def _faces_like_splits() -> Splits:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 255, (96, 1, 56, 46), generator=generator, dtype=torch.uint8)
    labels = torch.arange(12).repeat_interleave(8)
    names = [str(index) for index in range(12)]
    return Splits(ImageSet(images, labels, names), ImageSet(images[:16], labels[:16], names), {}, {"name": "toy"})


@pytest.mark.parametrize("preset", ["tutorial", "fast", "faces", "article"])
def test_bf16_steps_never_wait_for_the_gpu(tmp_path, preset):
    """Steps after the first raise if anything in them blocks the host on the device (sync debug mode)."""
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    from siamese.data.datasets import epoch_generator
    from siamese.training.samplers import epoch_batches
    from siamese.training.steps import (
        augmentation_generator,
        build_training_parts,
        epoch_batches_on_device,
        prepare_batch,
        train_step,
    )

    splits = toy_splits() if preset in ("tutorial", "fast") else _faces_like_splits()
    overrides = {"classes_per_batch": 4, "samples_per_class": 4, "batch_size": 16} if preset != "article" else {}
    config = build_config(
        {"dataset": "mnist", "preset": preset, "epochs": 1, "precision": "bf16", "device": "cuda",
         "progress": False, "eval_every": 0, "out": str(tmp_path / "m"), **overrides}
    )  # fmt: skip
    device = torch.device("cuda")
    parts = build_training_parts(config, splits, device, "bf16", total_steps=100)
    step_module, optimizer, scaler, schedule = parts.step_module, parts.optimizer, parts.scaler, parts.schedule
    images, labels = splits.train.images.to(device), splits.train.labels.to(device)
    generator = epoch_generator(config.seed, 0)
    augment = augmentation_generator(config.seed, 0, 0, device, generator)
    batches = epoch_batches_on_device(list(epoch_batches(config, splits.train.labels, generator)), device)
    assert len(batches) >= 3
    first = prepare_batch(images[batches[0]], config, augment, splits.preprocessing)
    train_step(step_module, optimizer, scaler, schedule, first, labels[batches[0]], device, "bf16")  # warm-up
    torch.cuda.synchronize()
    running = torch.zeros((), device=device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch_index in batches[1:3]:
            batch = prepare_batch(images[batch_index], config, augment, splits.preprocessing)
            running += train_step(
                step_module, optimizer, scaler, schedule, batch, labels[batch_index], device, "bf16"
            ).detach()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(running).item()
