"""One-shot faces side by side: the article's pipeline against our default, in one run.

By default all pipelines train on AT&T subjects s1-s30 and are scored on the unseen subjects
s31-s40: ROC AUC and equal error rate over all test pairs, and 10-way one-shot identification
(200 draws). "ours, one embedding" is our default recipe with the part embeddings switched off,
to show what they add. `--folds` instead runs our two recipes on each of the four 10-subject
folds (s1-s10, ..., s31-s40 held out in turn) and prints the mean, so that a recipe is not judged
on one split only.

  python benchmarks/faces_benchmark.py --data-root ../shared/data/att_faces
  python benchmarks/faces_benchmark.py --data-root ../shared/data/att_faces --folds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siamese.config import build_config  # noqa: E402
from siamese.training import load_splits, train  # noqa: E402

# Our default recipe without part embeddings: one 64-d embedding of the whole face.
WITHOUT_PARTS = {"parts": 0, "embedding_dim": 64}
FOLDS = [[f"s{number}" for number in range(first, first + 10)] for first in (1, 11, 21, 31)]


def run(preset: str, data_root: str, seed: int, test_classes: list[str] | None = None, **overrides) -> dict:
    config = build_config(
        {
            "dataset": "att_faces",
            "data_root": data_root,
            "preset": preset,
            "seed": seed,
            "test_classes": test_classes,
            "eval_every": 0,
            "progress": False,
            "out": f"runs/bench_faces_{preset}",
            **overrides,
        }
    )
    splits = load_splits(config)
    result = train(config, splits)
    return {"seconds": result.history[-1]["train_seconds"], "epochs": config.epochs, **result.metrics}


def print_rows(rows: list[tuple[str, dict]]) -> None:
    print(f"  {'pipeline':<38} {'epochs':>6} {'train s':>8} {'ROC AUC':>8} {'EER':>7} {'10-way 1-shot':>14}")
    for name, figures in rows:
        print(
            f"  {name:<38} {figures['epochs']:>6.0f} {figures['seconds']:>8.0f} {figures['roc_auc']:>8.4f} "
            f"{figures['eer']:>7.2%} {figures['one_shot_accuracy']:>14.2%}"
        )


def side_by_side(arguments: argparse.Namespace) -> list[tuple[str, dict]]:
    print("Article pipeline (its network on 100x100, balanced pairs, pairwise loss, margin 2):", flush=True)
    article = run("article", arguments.data_root, arguments.seed, epochs=arguments.article_epochs)
    print("Ours (the faces preset, the default for --dataset att_faces):", flush=True)
    ours = run("faces", arguments.data_root, arguments.seed)
    print("Ours with one whole-face embedding (--parts 0 --embedding-dim 64):", flush=True)
    single = run("faces", arguments.data_root, arguments.seed, **WITHOUT_PARTS)
    rows = [("article", article), ("ours", ours), ("ours, one embedding", single)]
    print("\nAT&T faces, trained on s1-s30, tested on the unseen s31-s40")
    print_rows(rows)
    return rows


def folds(arguments: argparse.Namespace) -> list[tuple[str, dict]]:
    rows = []
    for recipe, overrides in (("ours", {}), ("ours, one embedding", WITHOUT_PARTS)):
        fold_rows = []
        for test_classes in FOLDS:
            name = f"{recipe}, {test_classes[0]}-{test_classes[-1]}"
            print(f"{name} held out:", flush=True)
            fold_rows.append((name, run("faces", arguments.data_root, arguments.seed, test_classes, **overrides)))
        mean = {
            key: sum(figures[key] for _, figures in fold_rows) / len(fold_rows)
            for key in ("seconds", "epochs", "roc_auc", "eer", "one_shot_accuracy")
        }
        rows += [*fold_rows, (f"{recipe}, mean of 4 folds", mean)]
    print("\nAT&T faces, each 10-subject fold held out in turn (trained on the other 30 subjects)")
    print_rows(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="../shared/data/att_faces")
    parser.add_argument("--article-epochs", type=int, default=100)
    parser.add_argument("--folds", action="store_true", help="our recipes on all four 10-subject folds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args()

    rows = folds(arguments) if arguments.folds else side_by_side(arguments)
    if arguments.json:
        trimmed = {
            name: {key: value for key, value in figures.items() if key != "distance_histogram"}
            for name, figures in rows
        }
        Path(arguments.json).write_text(json.dumps(trimmed, indent=2))


if __name__ == "__main__":
    main()
