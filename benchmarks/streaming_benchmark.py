"""Training from the decoded-image cache against training from the same images held in memory.

Reports the first run's decode time (listing the folder and building the cache), the cached start
(listing again, hashing the file list and reopening the complete cache: what every later training
run pays), peak resident memory while training from the cache, and training images per second for
the two paths of `siamese.training.loop`: batches read ahead from the memory map (`read_ahead`) and
batches gathered from a uint8 tensor in memory. Both run the library's own training step (the
folder preset: P x K batches, warps, the part-based CosFace convnet, AdamW) on the same batches,
in alternating rounds, so a busy shared machine slows both alike.

  python benchmarks/streaming_benchmark.py                      # quick: 5,000 images, 100 classes
  python benchmarks/streaming_benchmark.py --images 100000 --classes 1000
  python benchmarks/streaming_benchmark.py --device cuda        # on a GPU
  python benchmarks/streaming_benchmark.py --keep-cache          # keep the generated folder and the cache

The synthetic folder is generated in the temp folder when missing (scripts/make_synthetic_folder.py) and never
committed. What a run creates there (the generated folder, the decoded-image cache: 1.2 GB for 100,000 images) is
removed at its end unless --keep-cache is given; folders named by --folder or --cache-dir are never removed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siamese.data.datasets import Splits, class_balanced_batches  # noqa: E402
from siamese.data.folders import stream_image_folder  # noqa: E402
from siamese.runtime.precision import configure_backends, pick_device, pick_precision  # noqa: E402
from siamese.training.config import build_config  # noqa: E402
from siamese.training.steps import (  # noqa: E402
    augmentation_generator,
    build_training_parts,
    epoch_batches_on_device,
    prepare_batch,
    read_ahead,
    train_step,
)

REPOSITORY = Path(__file__).resolve().parents[1]


def peak_rss_megabytes() -> dict:
    """Peak resident set size so far (Linux reports kilobytes): this process, and its largest finished child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self_mb": round(own, 1), "largest_child_mb": round(children, 1)}


def evict_from_page_cache(path: Path) -> None:
    """Drop this one file's pages from the OS page cache, so the next reads come from the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def resident_megabytes_now() -> dict:
    """Resident memory now (Linux): anonymous (the process's own) and file-backed (the cache's touched pages)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


class Trainer:
    """One model, loss, optimiser and schedule built as `train()` builds them, stepping on given batches."""

    def __init__(self, config, splits: Splits, device: torch.device, precision: str):
        torch.manual_seed(config.seed)
        self.config, self.device, self.precision, self.preprocessing = config, device, precision, splits.preprocessing
        parts = build_training_parts(config, splits, device, precision, total_steps=10**6)
        self.optimizer, self.scaler, self.schedule = parts.optimizer, parts.scaler, parts.schedule
        self.step_module = parts.step_module
        self.generator = augmentation_generator(config.seed, 0, 0, device, torch.Generator().manual_seed(1))
        self.labels = splits.train.labels.to(device)

    def run(self, pixel_batches, device_batches: list[torch.Tensor]) -> float:
        """Seconds to train on each batch (the uint8 pixels arrive from `pixel_batches`)."""
        started = time.perf_counter()
        for pixels, indices in zip(pixel_batches, device_batches, strict=True):
            batch = prepare_batch(pixels, self.config, self.generator, self.preprocessing)
            train_step(
                self.step_module, self.optimizer, self.scaler, self.schedule, batch, self.labels[indices],
                self.device, self.precision,
            )  # fmt: skip
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images in the generated folder")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--folder", type=Path, help="image folder (generated here if missing)")
    parser.add_argument("--cache-dir", type=Path, help="cache folder (default: a fresh temporary one)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    parser.add_argument("--classes-per-batch", type=int, default=32)
    parser.add_argument("--samples-per-class", type=int, default=4)
    parser.add_argument("--batches", type=int, default=6, help="training steps per round and path")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--keep-cache", action="store_true", help="keep the generated folder and the decoded-image cache it created"
    )
    arguments = parser.parse_args(argv)

    folder = arguments.folder or Path(tempfile.gettempdir()) / (
        f"siamese_synthetic_{arguments.images}_{arguments.classes}_{arguments.size}"
    )
    created = [] if folder.exists() else [folder]
    if arguments.cache_dir is None:
        arguments.cache_dir = Path(tempfile.mkdtemp(prefix="siamese_cache_"))
        created.append(arguments.cache_dir)
    try:
        run(arguments, folder)
    finally:
        for path in created:
            if arguments.keep_cache:
                print(f"kept {path}")
            else:
                shutil.rmtree(path, ignore_errors=True)


def run(arguments: argparse.Namespace, folder: Path) -> None:
    """Generate the folder when missing, then measure; prints the report as JSON."""
    report: dict = {"folder": str(folder), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if not folder.exists():
        started = time.perf_counter()
        command = [sys.executable, str(REPOSITORY / "scripts" / "make_synthetic_folder.py"), str(folder)]
        command += [f"--images={arguments.images}", f"--classes={arguments.classes}", f"--size={arguments.size}"]
        subprocess.run([*command, f"--seed={arguments.seed}"], check=True)
        report["generate_seconds"] = round(time.perf_counter() - started, 2)

    size = [arguments.size, arguments.size]
    preprocessing = {"kind": "folder", "grayscale": False, "size": size, "mean": 0.5, "std": 0.5}
    cache_dir = arguments.cache_dir

    started = time.perf_counter()
    streamed = stream_image_folder(folder, preprocessing, cache_dir, workers=arguments.workers)
    report["first_run_seconds"] = round(time.perf_counter() - started, 2)
    report["images"] = len(streamed)
    report["cache_megabytes"] = round(streamed.images.shape.numel() / 2**20, 1)
    del streamed

    started = time.perf_counter()
    streamed = stream_image_folder(folder, preprocessing, cache_dir, workers=arguments.workers)
    report["cached_start_seconds"] = round(time.perf_counter() - started, 2)
    report["peak_rss_before_training"] = peak_rss_megabytes()

    device = pick_device(arguments.device)
    precision = pick_precision(device, "auto")
    configure_backends(device)
    config = build_config(
        {
            "dataset": "folder", "preset": "folder", "image_size": size, "grayscale": False, "device": str(device),
            "classes_per_batch": arguments.classes_per_batch, "samples_per_class": arguments.samples_per_class,
            "seed": arguments.seed,
        }
    )  # fmt: skip
    empty = streamed.subset(torch.arange(0))
    generator = torch.Generator().manual_seed(arguments.seed)
    all_batches = list(
        class_balanced_batches(streamed.labels, arguments.classes_per_batch, arguments.samples_per_class, generator)
    )
    batch_size = arguments.classes_per_batch * arguments.samples_per_class
    needed = arguments.batches * (arguments.rounds + 1)
    if len(all_batches) < needed:
        raise SystemExit(f"the folder gives {len(all_batches)} batches of {batch_size}; need {needed}: use more images")
    rounds = [all_batches[r * arguments.batches : (r + 1) * arguments.batches] for r in range(arguments.rounds + 1)]

    splits = Splits(streamed, empty, preprocessing, {"name": "synthetic"})
    from_cache = Trainer(config, splits, device, precision)
    # Cold: the cache file's pages dropped first, so the first round reads from the disk (and warms up).
    evict_from_page_cache(Path(streamed.images.cache.images.filename))
    cold = from_cache.run(read_ahead(streamed.images, rounds[0], device), epoch_batches_on_device(rounds[0], device))
    report["cache_cold_images_per_second"] = round(arguments.batches * batch_size / cold, 1)
    for batches in rounds[1:]:  # the cache path alone first, so its peak memory is its own
        from_cache.run(read_ahead(streamed.images, batches, device), epoch_batches_on_device(batches, device))
    report["peak_rss_while_training_from_cache"] = peak_rss_megabytes()
    report["rss_after_training_from_cache"] = resident_megabytes_now()

    in_memory_images = streamed.images[:].to(device)  # (N, C, H, W) uint8: the whole set, as train() holds it
    in_memory = Trainer(config, splits, device, precision)  # the same start: same seed, same shapes
    warm_up = epoch_batches_on_device(rounds[0], device)
    in_memory.run((in_memory_images[indices] for indices in warm_up), warm_up)
    seconds: dict[str, list[float]] = {"cache": [], "in_memory": []}
    for round_index, batches in enumerate(rounds[1:]):
        on_device = epoch_batches_on_device(batches, device)
        for name in ("cache", "in_memory") if round_index % 2 == 0 else ("in_memory", "cache"):
            if name == "cache":
                elapsed = from_cache.run(read_ahead(streamed.images, batches, device), on_device)
            else:
                elapsed = in_memory.run((in_memory_images[indices] for indices in on_device), on_device)
            seconds[name].append(elapsed)
    images_per_path = arguments.batches * batch_size * arguments.rounds
    for name, values in seconds.items():
        report[f"{name}_training_images_per_second"] = round(images_per_path / sum(values), 1)
    report["cache_over_in_memory"] = round(sum(seconds["in_memory"]) / sum(seconds["cache"]), 3)
    report["per_round_seconds"] = {name: [round(value, 3) for value in values] for name, values in seconds.items()}
    report["batch_size"] = batch_size
    report["device"] = str(device)
    report["precision"] = precision
    report["peak_rss_with_in_memory_copy"] = peak_rss_megabytes()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
