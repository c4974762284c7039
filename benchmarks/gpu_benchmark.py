"""Training throughput on a GPU: MNIST-size synthetic data, the tutorial model and the fast preset.

60,000 synthetic 28x28 digits-like images in 10 classes; for each model, batch 256 and 1024, bf16
(fp16 with a scaler where the GPU has no bf16), with and without --compile; images per second and
seconds per 60k-image epoch (evaluation excluded), after one warm-up epoch. Under torchrun every
process trains its share of the global batch and the main process prints.

    python benchmarks/gpu_benchmark.py                          # one GPU
    torchrun --nproc_per_node=4 benchmarks/gpu_benchmark.py     # four GPUs
    python benchmarks/gpu_benchmark.py --device cpu --epochs 1 --images 4096   # a quick check without a GPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from siamese.data.datasets import DIGITS_PREPROCESSING, ImageSet, Splits  # noqa: E402
from siamese.runtime import distributed  # noqa: E402
from siamese.training.config import build_config  # noqa: E402
from siamese.training.loop import train  # noqa: E402


def synthetic_digits(count: int, seed: int = 0) -> Splits:
    """`count` 28x28 uint8 images in 10 classes: a class-specific bar pattern plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    images = torch.randint(0, 60, (count, 1, 28, 28), generator=generator, dtype=torch.uint8)
    for digit in range(10):
        members = labels == digit
        images[members, 0, 2 * digit + 4 : 2 * digit + 7, 6:22] = 255
    names = [str(digit) for digit in range(10)]
    test = ImageSet(images[:1000], labels[:1000], names)
    return Splits(ImageSet(images, labels, names), test, dict(DIGITS_PREPROCESSING), {"name": "synthetic"})


def measure(splits: Splits, preset: str, batch: int, compile_model: bool, device: str, epochs: int) -> dict:
    per_class = batch // 10
    with tempfile.TemporaryDirectory() as scratch:
        config = build_config(
            {
                "dataset": "mnist",
                "preset": preset,
                "sampler": "balanced",
                "classes_per_batch": 10,
                "samples_per_class": per_class,
                "batch_size": batch,
                "epochs": epochs + 1,  # the first epoch warms up (cuDNN autotuning, compilation)
                "schedule": "constant",
                "device": device,
                "compile": compile_model,
                "eval_every": 0,
                "progress": False,
                "out": scratch,
            }
        )
        result = train(config, splits, final_evaluation=False)
    history = result.history
    seconds = (history[-1]["train_seconds"] - history[0]["train_seconds"]) / epochs
    images = (len(splits.train) // batch) * batch
    return {"seconds_per_epoch": seconds, "images_per_second": images / seconds, "precision": result.precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs, after one warm-up epoch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--no-compile", action="store_true", help="leave out the --compile rows")
    arguments = parser.parse_args()
    topology = distributed.setup("cuda" if torch.cuda.is_available() and arguments.device != "cpu" else "cpu")
    splits = synthetic_digits(arguments.images)
    rows = []
    for preset in ("tutorial", "fast"):
        for batch in arguments.batches:
            for compile_model in (False,) if arguments.no_compile else (False, True):
                figures = measure(splits, preset, batch, compile_model, arguments.device, arguments.epochs)
                rows.append((preset, batch, compile_model, figures))
    if topology.is_main:
        name = torch.cuda.get_device_name() if torch.cuda.is_available() and arguments.device != "cpu" else "CPU"
        print(f"\nDevice: {name} x {topology.world_size}, torch {torch.__version__}, {arguments.images:,} images")
        print(f"  {'model':<10} {'batch':>6} {'compile':>8} {'precision':>9} {'images/s':>10} {'s / epoch':>10}")
        for preset, batch, compile_model, figures in rows:
            per_60k = figures["seconds_per_epoch"] * 60_000 / arguments.images
            print(
                f"  {preset:<10} {batch:>6} {'yes' if compile_model else 'no':>8} {figures['precision']:>9} "
                f"{figures['images_per_second']:>10,.0f} {per_60k:>10.2f}"
            )
        print("  (seconds per epoch scaled to a 60,000-image epoch)")
    distributed.cleanup()


if __name__ == "__main__":
    main()
