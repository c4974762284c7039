"""MNIST side by side: the tutorial's pipeline as published against ours, in one run.

Both train on the same 5,000 MNIST training digits and are scored on the official 10,000-image
test set (kNN, k=5, training images as references). Prints training throughput for the same
model, and time to accuracy for each recipe.

  python benchmarks/mnist_benchmark.py --data-root ../shared/data/mnist
  python benchmarks/mnist_benchmark.py --data-root ../shared/data/mnist --tutorial-epochs 10 --skip-best
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siamese.data.datasets import load_mnist  # noqa: E402
from siamese.evaluation.retrieval import knn_accuracy  # noqa: E402
from siamese.modeling.losses import ContrastiveLoss  # noqa: E402
from siamese.modeling.network import EmbeddingNet  # noqa: E402
from siamese.training.config import build_config  # noqa: E402
from siamese.training.loop import train  # noqa: E402
from siamese.training.samplers import steps_per_epoch  # noqa: E402


def tutorial_loader(root: str, seed: int):
    """The published input pipeline: torchvision MNIST, per-sample v2 transforms, a shuffling DataLoader."""
    from torchvision.datasets import MNIST
    from torchvision.transforms import v2

    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    dataset = MNIST(root, train=True, transform=to_tensor)
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, generator=generator)


def tutorial_knn(model, splits) -> float:
    """Test-set kNN accuracy of a model trained by the tutorial pipeline (fp32, as published)."""
    references = model.encode(splits.train.images, batch_size=1024)  # (5000, D)
    queries = model.encode(splits.test.images, batch_size=1024)  # (10000, D)
    return knn_accuracy(queries, splits.test.labels, references, splits.train.labels, k=5)


def run_tutorial(root: str, splits, epochs: int, seed: int) -> dict:
    """Train as published (fp32, batch 32, Adam 1e-3, margin 1) and score after every epoch."""
    torch.manual_seed(seed)
    model = EmbeddingNet(architecture="tutorial", embedding_dim=50)
    loss_function = ContrastiveLoss(margin=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = tutorial_loader(root, seed)
    seconds, images_seen, history = 0.0, 0, []
    for epoch in range(epochs):
        model.train()
        started = time.perf_counter()
        for images, labels in loader:
            loss = loss_function(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images_seen += images.shape[0]
        seconds += time.perf_counter() - started
        history.append({"epoch": epoch + 1, "train_seconds": seconds, "knn_accuracy": tutorial_knn(model, splits)})
        print(f"  tutorial epoch {epoch + 1}: {seconds:.1f}s, kNN {history[-1]['knn_accuracy']:.2%}", flush=True)
    # The tutorial's own evaluation re-reads the training set: the same figure, for comparison.
    references = model.encode(splits.train.images, batch_size=1024)
    train_as_test = knn_accuracy(references, splits.train.labels, references, splits.train.labels, k=5)
    return {"history": history, "images_per_second": images_seen / seconds, "train_set_knn": train_as_test}


def run_ours(splits, out: str, seed: int, final_evaluation: bool = True, **overrides) -> dict:
    config = build_config({"dataset": "mnist", "out": out, "seed": seed, "progress": False, **overrides})
    result = train(config, splits, final_evaluation=final_evaluation)
    history = result.history
    if config.sampler == "shuffle":
        images_per_epoch = len(splits.train)
    else:
        batch = config.classes_per_batch * config.samples_per_class
        images_per_epoch = steps_per_epoch(config, len(splits.train)) * batch
    return {
        "history": history,
        "images_per_second": images_per_epoch * len(history) / history[-1]["train_seconds"],
        "final": result.metrics,
        "config": config,
        "precision": result.precision,
    }


def first_reaching(history: list[dict], target: float) -> str:
    for record in history:
        if record.get("knn_accuracy", 0.0) >= target:
            return f"{record['train_seconds']:.0f}s (epoch {record['epoch']})"
    return "not reached"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="../shared/data/mnist")
    parser.add_argument("--tutorial-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-best", action="store_true", help="leave out the 10-minute best configuration")
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args()

    splits = load_mnist(arguments.data_root)
    print(f"CPU: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"Data: {len(splits.train)} training digits, {len(splits.test)} official test digits\n")

    print("Tutorial pipeline as published (fp32, DataLoader + per-sample transforms, batch 32):", flush=True)
    tutorial = run_tutorial(arguments.data_root, splits, arguments.tutorial_epochs, arguments.seed)

    print("Ours, same model and loss: tensors on the device, channels-last, precision auto:", flush=True)
    same_32 = run_ours(
        splits, "runs/bench_same32", arguments.seed, preset="tutorial", epochs=1, eval_every=0, final_evaluation=False
    )
    same_256 = run_ours(
        splits,
        "runs/bench_same256",
        arguments.seed,
        preset="tutorial",
        epochs=1,
        batch_size=256,
        eval_every=0,
        final_evaluation=False,
    )
    print("Ours, recipes:", flush=True)
    fast = run_ours(splits, "runs/bench_fast", arguments.seed, preset="fast")
    best = (
        None
        if arguments.skip_best
        else run_ours(splits, "runs/bench_best", arguments.seed, preset="best", eval_every=5)
    )

    base = tutorial["images_per_second"]
    print("\nTraining throughput, tutorial model (images/s, higher is better)")
    print(f"  {'pipeline':<44} {'images/s':>9} {'vs tutorial':>12}")
    rows = [
        ("tutorial as published (fp32, batch 32)", base),
        (f"ours, batch 32 ({same_32['precision']})", same_32["images_per_second"]),
        (f"ours, batch 256 ({same_256['precision']})", same_256["images_per_second"]),
    ]
    for name, value in rows:
        print(f"  {name:<44} {value:>9.0f} {value / base:>11.2f}x")

    print("\nTime to accuracy (kNN k=5 on the official test set; training seconds, evaluation excluded)")
    print(f"  {'recipe':<22} {'epochs':>6} {'seconds':>8} {'final kNN':>10} {'>=98.8%':>16} {'>=99.3%':>16}")
    recipes = [("tutorial", tutorial["history"]), ("ours: fast", fast["history"])]
    if best:
        recipes.append(("ours: best", best["history"]))
    for name, history in recipes:
        last = history[-1]
        print(
            f"  {name:<22} {last['epoch']:>6} {last['train_seconds']:>8.0f} {last['knn_accuracy']:>10.2%} "
            f"{first_reaching(history, 0.988):>16} {first_reaching(history, 0.993):>16}"
        )
    print(
        f"\nThe tutorial's own evaluation scores the training set: {tutorial['train_set_knn']:.2%} here, "
        f"against {tutorial['history'][-1]['knn_accuracy']:.2%} on the test set."
    )
    if arguments.json:
        figures = {
            "throughput": {name: value for name, value in rows},
            "tutorial": tutorial,
            "fast": fast["history"],
            "best": best["history"] if best else None,
        }
        Path(arguments.json).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
