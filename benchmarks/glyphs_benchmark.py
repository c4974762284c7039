"""Generality beyond faces and digits: synthetic glyphs in groups, trained with the folder defaults.

The data (siamese/glyphs.py: 384 characters in 12 script and symbol groups, 20 samples each) is
written to a temporary folder, or read from --data. Training uses `--dataset folder --class-depth 2`
and every folder default (input size from the data, background fill, no mirror images); whole groups
are held out for the test (a seeded 25% of the groups) and for validation (15% of the rest). The
figures are on the test groups only:

- within-group 20-way one-shot: each draw takes 20 characters of ONE test group (alike characters);
- the same across groups, for comparison;
- ROC AUC and EER over test pairs, and the error rates at the threshold chosen on validation.

    python benchmarks/glyphs_benchmark.py
    python benchmarks/glyphs_benchmark.py --epochs 30   # a shorter run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from siamese.data.folders import class_group  # noqa: E402
from siamese.data.glyphs import write_glyphs  # noqa: E402
from siamese.evaluation.verification import one_shot_accuracy  # noqa: E402
from siamese.training.config import build_config  # noqa: E402
from siamese.training.datasets import load_splits  # noqa: E402
from siamese.training.loop import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="an existing glyph folder (scripts/make_glyphs.py); default: generate one")
    parser.add_argument("--epochs", type=int, default=None, help="override the folder preset's epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ways", type=int, default=20)
    parser.add_argument("--draws", type=int, default=500)
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        data = arguments.data
        if data is None:
            data = str(Path(scratch) / "glyphs")
            started = time.perf_counter()
            counts = write_glyphs(data, samples_per_class=20, seed=arguments.seed)
            seconds = time.perf_counter() - started
            print(f"Generated {sum(counts.values())} classes in {len(counts)} groups in {seconds:.0f} s")
        overrides = {"epochs": arguments.epochs} if arguments.epochs else {}
        config = build_config(
            {
                "dataset": "folder",
                "data_root": data,
                "class_depth": 2,
                "seed": arguments.seed,
                "eval_every": 0,
                "progress": False,
                "out": str(Path(scratch) / "model"),
                **overrides,
            }
        )
        splits = load_splits(config)
        description = splits.description
        print(
            f"Input {splits.preprocessing['size']} (from the data); test groups {description['test_groups']}; "
            f"validation classes from {sorted({class_group(n) for n in description['validation_classes']})}"
        )
        result = train(config, splits)

    test = splits.test
    embeddings = result.model.encode(test.images, batch_size=1024)  # (Q, D)
    groups = {label: class_group(name) for label, name in enumerate(test.class_names)}
    within = one_shot_accuracy(
        embeddings, test.labels, ways=arguments.ways, draws=arguments.draws, seed=arguments.seed, class_groups=groups
    )
    across = one_shot_accuracy(embeddings, test.labels, ways=arguments.ways, draws=arguments.draws, seed=arguments.seed)
    metrics = result.metrics
    print(
        f"\nGlyphs, folder defaults ({config.epochs} epochs, {result.history[-1]['train_seconds']:.0f} s of training, "
        f"device {result.device}, {torch.get_num_threads()} threads):"
    )
    print(f"  {arguments.ways}-way one-shot within a test group: {within:.2%}")
    print(f"  {arguments.ways}-way one-shot across test groups:  {across:.2%}")
    print(f"  ROC AUC {metrics['roc_auc']:.4f}, EER {metrics['eer']:.2%}")
    print(
        f"  at the validation threshold {metrics['threshold']:.4f}: false accepts {metrics['false_accept_rate']:.2%}, "
        f"false rejects {metrics['false_reject_rate']:.2%}"
    )


if __name__ == "__main__":
    main()
