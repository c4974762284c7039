"""The GPU path: one training step under bf16 and under fp16 with the gradient scaler. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from siamese.config import build_config
from siamese.data import ImageSet, Splits
from siamese.training import train

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
    from siamese.training import build_model

    before = {name: value.clone() for name, value in build_model(config, toy_splits()).state_dict().items()}
    result = train(config, toy_splits(), final_evaluation=False)
    assert result.precision == precision and result.device.startswith("cuda")
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))
    after = result.model.state_dict()
    assert any(not torch.equal(before[name], after[name].cpu()) for name in before if before[name].is_floating_point())
