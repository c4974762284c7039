"""One-shot faces side by side: the article's pipeline against our default, in one run.

Both train on AT&T subjects s1-s30 and are scored on the unseen subjects s31-s40: ROC AUC and
equal error rate over all test pairs, and 10-way one-shot identification (200 draws).

  python benchmarks/faces_benchmark.py --data-root ../shared/data/att_faces
  python benchmarks/faces_benchmark.py --data-root ../shared/data/att_faces --article-epochs 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siamese.config import build_config  # noqa: E402
from siamese.training import load_splits, train  # noqa: E402


def run(preset: str, data_root: str, seed: int, **overrides) -> dict:
    config = build_config(
        {
            "dataset": "att_faces",
            "data_root": data_root,
            "preset": preset,
            "seed": seed,
            "eval_every": 0,
            "progress": False,
            "out": f"runs/bench_faces_{preset}",
            **overrides,
        }
    )
    splits = load_splits(config)
    result = train(config, splits)
    return {"seconds": result.history[-1]["train_seconds"], "epochs": config.epochs, **result.metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="../shared/data/att_faces")
    parser.add_argument("--article-epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args()

    print("Article pipeline (its network on 100x100, balanced pairs, pairwise loss, margin 2):", flush=True)
    article = run("article", arguments.data_root, arguments.seed, epochs=arguments.article_epochs)
    print("Ours (the faces preset, the default for --dataset att_faces):", flush=True)
    ours = run("faces", arguments.data_root, arguments.seed)

    print("\nAT&T faces, trained on s1-s30, tested on the unseen s31-s40")
    print(f"  {'pipeline':<10} {'epochs':>6} {'train s':>8} {'ROC AUC':>8} {'EER':>7} {'10-way 1-shot':>14}")
    for name, figures in (("article", article), ("ours", ours)):
        print(
            f"  {name:<10} {figures['epochs']:>6} {figures['seconds']:>8.0f} {figures['roc_auc']:>8.4f} "
            f"{figures['eer']:>7.2%} {figures['one_shot_accuracy']:>14.2%}"
        )
    if arguments.json:
        trimmed = {
            name: {key: value for key, value in figures.items() if key != "distance_histogram"}
            for name, figures in (("article", article), ("ours", ours))
        }
        Path(arguments.json).write_text(json.dumps(trimmed, indent=2))


if __name__ == "__main__":
    main()
