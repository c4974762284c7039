"""Training-style batches from the decoded-image cache against the same images held in memory.

Reports the first run's decode time (building the cache), the cached start (listing the folder and
reopening the complete cache), peak resident memory while streaming, and images per second drawing
P x K batches (uint8 batch -> float -> normalise -> a forward pass of the small convnet) from the
memory-mapped cache and from an in-memory uint8 tensor of the same images. The two paths run back
to back over the same batches, alternating which goes first, so a busy shared CPU slows both alike.

  python benchmarks/streaming_benchmark.py                      # quick: 5,000 images, 100 classes
  python benchmarks/streaming_benchmark.py --images 100000 --classes 1000 --folder /tmp/synthetic_100k

The synthetic folder is generated on first use (scripts/make_synthetic_folder.py) and never committed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siamese.cache import build_cache  # noqa: E402
from siamese.data import class_balanced_batches, to_float  # noqa: E402
from siamese.folders import list_image_folder as folder_images  # noqa: E402
from siamese.models import EmbeddingNet  # noqa: E402

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


def run_batches(draw, batches: list[torch.Tensor], model: torch.nn.Module, preprocessing: dict) -> float:
    """Seconds to turn each batch of indices into embeddings."""
    started = time.perf_counter()
    with torch.inference_mode():
        for indices in batches:
            images = draw(indices)  # (B, C, H, W) uint8
            inputs = to_float(images, preprocessing).contiguous(memory_format=torch.channels_last)
            model(inputs)  # (B, D)
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
    parser.add_argument("--batches", type=int, default=6, help="batches per round and path")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)

    folder = arguments.folder or Path(tempfile.gettempdir()) / (
        f"siamese_synthetic_{arguments.images}_{arguments.classes}_{arguments.size}"
    )
    report: dict = {"folder": str(folder), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if not folder.exists():
        started = time.perf_counter()
        command = [sys.executable, str(REPOSITORY / "scripts" / "make_synthetic_folder.py"), str(folder)]
        command += [f"--images={arguments.images}", f"--classes={arguments.classes}", f"--size={arguments.size}"]
        subprocess.run([*command, f"--seed={arguments.seed}"], check=True)
        report["generate_seconds"] = round(time.perf_counter() - started, 2)

    size = [arguments.size, arguments.size]
    preprocessing = {"kind": "folder", "grayscale": False, "size": size, "mean": 0.5, "std": 0.5}
    cache_dir = arguments.cache_dir or Path(tempfile.mkdtemp(prefix="siamese_cache_"))

    started = time.perf_counter()
    paths, labels, _ = folder_images(folder)
    cached = build_cache(paths, labels, preprocessing, cache_dir, workers=arguments.workers)
    report["first_run_seconds"] = round(time.perf_counter() - started, 2)
    report["images"] = len(cached)
    report["cache_megabytes"] = round(int(np.prod(cached.shape)) / 2**20, 1)
    report["peak_rss_after_build"] = peak_rss_megabytes()
    del cached

    started = time.perf_counter()
    paths, labels, _ = folder_images(folder)
    cached = build_cache(paths, labels, preprocessing, cache_dir, workers=arguments.workers)
    report["cached_start_seconds"] = round(time.perf_counter() - started, 2)

    torch.manual_seed(arguments.seed)
    channels, height, width = cached.shape[1:]
    model = EmbeddingNet(architecture="convnet", embedding_dim=64, in_channels=channels, image_size=(height, width))
    model = model.eval().to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(arguments.seed)
    all_batches = list(
        class_balanced_batches(cached.labels, arguments.classes_per_batch, arguments.samples_per_class, generator)
    )
    batch_size = arguments.classes_per_batch * arguments.samples_per_class
    needed = arguments.batches * (arguments.rounds + 1)
    if len(all_batches) < needed:
        raise SystemExit(f"the folder gives {len(all_batches)} batches of {batch_size}; need {needed}: use more images")

    with torch.inference_mode():  # the first forward pass picks its kernels; keep that out of the timings
        model(torch.zeros(batch_size, channels, height, width).contiguous(memory_format=torch.channels_last))
    # Cold: the cache file's pages dropped first, so these batches read from the disk.
    evict_from_page_cache(Path(cached.images.filename))
    cold_seconds = run_batches(cached.batch, all_batches[: arguments.batches], model, preprocessing)
    report["memmap_cold_images_per_second"] = round(arguments.batches * batch_size / cold_seconds, 1)
    rounds = [all_batches[(r + 1) * arguments.batches : (r + 2) * arguments.batches] for r in range(arguments.rounds)]
    run_batches(cached.batch, rounds[0], model, preprocessing)  # a warm pass, still without the in-memory copy
    report["peak_rss_while_streaming"] = peak_rss_megabytes()

    in_memory = torch.from_numpy(np.array(cached.images))  # (N, C, H, W) uint8, the whole set in RAM
    draws = {"memmap": cached.batch, "in_memory": lambda indices: in_memory[indices]}
    seconds: dict[str, list[float]] = {"memmap": [], "in_memory": []}
    for round_index, batches in enumerate(rounds):
        order = ("memmap", "in_memory") if round_index % 2 == 0 else ("in_memory", "memmap")
        for name in order:
            seconds[name].append(run_batches(draws[name], batches, model, preprocessing))
    images_per_path = arguments.batches * batch_size * len(rounds)
    for name, values in seconds.items():
        report[f"{name}_images_per_second"] = round(images_per_path / sum(values), 1)
    report["memmap_over_in_memory"] = round(sum(seconds["in_memory"]) / sum(seconds["memmap"]), 3)
    report["per_round_seconds"] = {name: [round(value, 3) for value in values] for name, values in seconds.items()}
    report["batch_size"] = batch_size
    report["peak_rss_with_in_memory_copy"] = peak_rss_megabytes()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
