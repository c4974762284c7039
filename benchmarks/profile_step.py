"""Where one training step's time goes: torch.profiler over steps of a preset on synthetic digits.

Builds the step exactly as `siamese.training.loop.train` does (prepare_batch + train_step) and prints
the wall time per step, the GPU (or CPU) time per step, and the operators that cost most.

    python benchmarks/profile_step.py --preset fast --batch 256          # on a GPU
    python benchmarks/profile_step.py --preset fast --batch 256 --device cpu --steps 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from benchmarks.gpu_benchmark import synthetic_digits  # noqa: E402
from siamese.data.datasets import epoch_generator  # noqa: E402
from siamese.runtime.precision import configure_backends, pick_device, pick_precision  # noqa: E402
from siamese.training.config import build_config  # noqa: E402
from siamese.training.samplers import epoch_batches  # noqa: E402
from siamese.training.steps import (  # noqa: E402
    augmentation_generator,
    build_training_parts,
    epoch_batches_on_device,
    prepare_batch,
    train_step,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", type=int, default=20, help="operators listed")
    arguments = parser.parse_args()

    device = pick_device(arguments.device)
    precision = pick_precision(device, "auto")
    configure_backends(device)
    splits = synthetic_digits(20_000)
    config = build_config(
        {"dataset": "mnist", "preset": arguments.preset, "sampler": "balanced", "classes_per_batch": 10,
         "samples_per_class": arguments.batch // 10, "batch_size": arguments.batch, "device": str(device)}
    )  # fmt: skip
    torch.manual_seed(0)
    parts = build_training_parts(config, splits, device, precision, total_steps=10**6)
    step_module, optimizer, scaler, schedule = parts.step_module, parts.optimizer, parts.scaler, parts.schedule
    images, labels = splits.train.images.to(device), splits.train.labels.to(device)
    generator = epoch_generator(0, 0)
    augment = augmentation_generator(0, 0, 0, device, generator)
    batches = epoch_batches_on_device(list(epoch_batches(config, splits.train.labels, generator)), device)

    def run(steps: list[torch.Tensor]) -> float:
        started = time.perf_counter()
        for indices in steps:
            batch = prepare_batch(images[indices], config, augment, splits.preprocessing)
            train_step(step_module, optimizer, scaler, schedule, batch, labels[indices], device, precision)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    run(batches[:10])  # warm-up: cuDNN autotuning, allocator, optimiser state
    steps = batches[10 : 10 + arguments.steps]
    plain = run(steps)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        run(steps)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(profiler.key_averages().table(sort_by=sort, row_limit=arguments.rows))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    milliseconds = 1000 * plain / len(steps)
    print(f"{arguments.preset}, batch {arguments.batch}, {precision} on {name}: {milliseconds:.2f} ms per step")


if __name__ == "__main__":
    main()
