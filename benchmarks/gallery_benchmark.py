"""Gallery search at scale, and embedding throughput, side by side in one run.

1. Query latency (one query at a time, top-5) against 10k, 100k and 1M synthetic unit vectors:
   brute force (numpy: all distances, then argpartition) against `GalleryIndex` (exact, and FAISS
   where it applies), with the index's build time and its recall@5 against exact search.
2. Embedding 10,000 images with the bundled faces model at batch 256: the raw forward pass on
   prepared tensors, `model.encode` on the same prepared tensors, and `siamese embed` end to end
   from PNG files on disk (decoding included).

    python benchmarks/gallery_benchmark.py
    python benchmarks/gallery_benchmark.py --sizes 10000 100000 --queries 100   # quicker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from siamese.search.index import GalleryIndex  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def unit_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    """Clustered unit vectors (float32), like the embeddings of many classes (20 images a class)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, count // 20), dim)).astype(np.float32)
    points = centres[rng.integers(0, len(centres), count)] + 0.3 * rng.standard_normal((count, dim)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def queries_like(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Queries as a gallery meets them: another photo of someone enrolled, i.e. a gallery vector moved a
    little (about as far as two images of one class are apart), not a point in empty space."""
    rng = np.random.default_rng(seed)
    picked = vectors[rng.integers(0, len(vectors), count)]
    moved = picked + 0.3 / np.sqrt(vectors.shape[1]) * rng.standard_normal(picked.shape).astype(np.float32)
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, norms: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    squared = norms - 2.0 * vectors @ query  # (N,), the query's own norm does not change the order
    nearest = np.argpartition(squared, k)[:k]
    return nearest[np.argsort(squared[nearest])]


def latency(function, queries: np.ndarray) -> tuple[float, float]:
    """Median and 95th percentile milliseconds of one call per query."""
    times = []
    for query in queries:
        started = time.perf_counter()
        function(query)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def search_table(sizes: list[int], dim: int, query_count: int, k: int = 5) -> None:
    print(f"\nQuery latency, top-{k}, {dim}-d unit vectors, one query at a time ({torch.get_num_threads()} threads)")
    print(f"  {'gallery':>9} {'method':<28} {'build s':>8} {'median ms':>10} {'p95 ms':>8} {'recall@5':>9}")
    for size in sizes:
        vectors = unit_vectors(size, dim, seed=0)
        queries = queries_like(vectors, query_count, seed=1)
        norms = (vectors**2).sum(axis=1)
        exact = [brute_force(vectors, norms, query, k) for query in queries]
        median, p95 = latency(lambda query, v=vectors, n=norms: brute_force(v, n, query, k), queries)
        print(f"  {size:>9,} {'numpy brute force':<28} {'':>8} {median:>10.2f} {p95:>8.2f} {'1.000':>9}")
        backends = ["exact", "faiss"] if size >= 100_000 else ["exact"]
        for backend in backends:
            started = time.perf_counter()
            index = GalleryIndex(torch.from_numpy(vectors), ["x"] * size, backend=backend)
            built = time.perf_counter() - started
            tensors = torch.from_numpy(queries)
            found = [index.search(query.unsqueeze(0), k)[1][0].tolist() for query in tensors]
            recall = np.mean([len(set(f) & set(e.tolist())) / k for f, e in zip(found, exact, strict=True)])
            median, p95 = latency(lambda query, i=index: i.search(query.unsqueeze(0), k), tensors)
            name = f"GalleryIndex {backend}" + (" (IVF-Flat)" if backend == "faiss" else "")
            print(f"  {size:>9,} {name:<28} {built:>8.1f} {median:>10.2f} {p95:>8.2f} {recall:>9.3f}")
        del vectors, norms


def embedding_table(count: int, batch_size: int = 256) -> None:
    from PIL import Image

    from siamese import cli
    from siamese.data.datasets import to_float
    from siamese.modeling.pretrained import load_model

    model = load_model(str(ROOT / "pretrained" / "faces"))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (count, *model.image_size), dtype=np.uint8)  # (N, H, W)
    prepared = torch.from_numpy(pixels).unsqueeze(1)  # (N, 1, H, W) uint8, already at the model's size
    print(f"\nEmbedding {count:,} images with the bundled faces model, batch {batch_size}")
    with torch.inference_mode():
        model(to_float(prepared[:batch_size], model.preprocessing))  # warm-up
        started = time.perf_counter()
        for start in range(0, count, batch_size):
            model(to_float(prepared[start : start + batch_size], model.preprocessing))
        forward = time.perf_counter() - started
    started = time.perf_counter()
    model.encode(prepared, batch_size=batch_size)
    encode = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "images"
        for index in range(count):
            label = folder / f"person{index % 100:03d}"
            label.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (112, 92), dtype=np.uint8)).save(label / f"{index}.png")
        started = time.perf_counter()
        cli.embed_folder(folder, str(ROOT / "pretrained" / "faces"), Path(scratch) / "g.safetensors", progress=False)
        end_to_end = time.perf_counter() - started
    print(f"  {'raw forward on prepared tensors':<48} {forward:>7.2f} s {count / forward:>9,.0f} images/s   1.00x")
    print(f"  {'model.encode on the same tensors':<48} {encode:>7.2f} s {count / encode:>9,.0f} images/s "
          f"{encode / forward:>6.2f}x")  # fmt: skip
    print(f"  {'siamese embed from 112x92 PNG files':<48} {end_to_end:>7.2f} s {count / end_to_end:>9,.0f} images/s "
          f"{end_to_end / forward:>6.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[160, 64], help="160: the faces model; 64: digits")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--embed-images", type=int, default=10_000)
    arguments = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for dim in arguments.dims:
        search_table(arguments.sizes, dim, arguments.queries)
    if arguments.embed_images:
        embedding_table(arguments.embed_images)


if __name__ == "__main__":
    main()
