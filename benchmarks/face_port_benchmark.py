"""The faces models side by side on the AT&T faces' four folds: dlib's port, the port fine-tuned, our convnet.

Every row runs `train.py`'s own pipeline (`siamese.training.loop.train`) on the same splits. Each 10-subject fold
is held out in turn as the test set; of the other 30 subjects, a seeded 4 validate and 26 train. The photos of
`real_faces/people` (five public figures, 12 photos, 66 pairs) join the validation set (`--extra-validation`):
validation alone chooses the thresholds, and its figures choose between the port and the fine-tuned model. The
test subjects only measure.

- port: `--preset faces_port`, dlib's ResNet face descriptor as published (no training), on dlib's aligned chips;
- fine-tuned: `--preset faces_finetune`, the same network trained a few epochs with the contrastive loss;
- convnet: `--preset faces`, our network trained from scratch on 56x46 grey images of the whole photo.

Photos where the face detector finds no face are named and left out of the face-chip rows (6 of the 400).

  python benchmarks/face_port_benchmark.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from siamese.training.config import build_config  # noqa: E402
from siamese.training.loop import train  # noqa: E402

FOLDS = [[f"s{number}" for number in range(first, first + 10)] for first in (1, 11, 21, 31)]
PIPELINES = {"port": "faces_port", "fine-tuned": "faces_finetune", "convnet": "faces"}
TEST_KEYS = ("roc_auc", "eer", "one_shot_accuracy", "false_accept_rate", "false_reject_rate")


def run(preset: str, data_root: Path, fold: list[str], seed: int, out: Path, **overrides) -> dict:
    """Train (or not, for the port) and measure one pipeline on one fold; its validation and test figures."""
    config = build_config(
        {
            "dataset": "att_faces",
            "data_root": str(data_root / "att_faces"),
            "extra_validation": str(data_root / "real_faces" / "people"),
            "preset": preset,
            "test_classes": fold,
            "seed": seed,
            "out": str(out),
            "progress": False,
            **overrides,
        }
    )
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(config)
    calibration = result.model.calibration
    validation = calibration["validation"]
    extra = validation["extra"]["at_threshold"]
    return {
        "seconds": time.perf_counter() - started,
        "skipped": sorted({str(warning.message) for warning in caught if "no face" in str(warning.message)}),
        "validation_roc_auc": validation["roc_auc"],
        "validation_eer": validation["eer"],
        "real_pairs": extra["genuine_pairs"] + extra["impostor_pairs"],
        "real_pairs_right": round(extra["accuracy"] * (extra["genuine_pairs"] + extra["impostor_pairs"])),
        "threshold": calibration["threshold"],
        "test_photos": result.model.training_info["dataset"]["test_size"],
        **{key: result.metrics[key] for key in TEST_KEYS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=list(PIPELINES))
    parser.add_argument("--epochs", type=int, help="override the fine-tuned row's epochs")
    parser.add_argument("--lr", type=float, help="override the fine-tuned row's learning rate")
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args()
    torch.set_num_threads(2)
    root = Path(arguments.data_root)
    tuning = {key: value for key, value in (("epochs", arguments.epochs), ("lr", arguments.lr)) if value is not None}
    rows: dict[str, list[dict]] = {name: [] for name in arguments.pipelines}
    with tempfile.TemporaryDirectory(prefix="faces-folds-") as scratch:
        for fold in FOLDS:
            for name in arguments.pipelines:
                overrides = tuning if name == "fine-tuned" else {}
                figures = run(PIPELINES[name], root, fold, arguments.seed, Path(scratch) / name, **overrides)
                figures["fold"] = f"{fold[0]}-{fold[-1]}"
                rows[name].append(figures)
                print(
                    f"{figures['fold']} {name:>10}: validation AUC {figures['validation_roc_auc']:.4f} EER "
                    f"{figures['validation_eer']:.2%}, real pairs {figures['real_pairs_right']}/"
                    f"{figures['real_pairs']}, threshold {figures['threshold']:.3f} | test AUC "
                    f"{figures['roc_auc']:.4f} EER {figures['eer']:.2%} one-shot {figures['one_shot_accuracy']:.2%} "
                    f"FA {figures['false_accept_rate']:.2%} FR {figures['false_reject_rate']:.2%} | "
                    f"{figures['seconds']:.0f} s, {len(figures['skipped'])} photos without a face",
                    flush=True,
                )
    print("\nmean over the four folds:")
    means = {}
    for name, results in rows.items():
        keys = ("validation_roc_auc", "validation_eer", *TEST_KEYS)
        means[name] = {key: sum(row[key] for row in results) / len(results) for key in keys}
        real = sum(row["real_pairs_right"] for row in results), sum(row["real_pairs"] for row in results)
        mean = means[name]
        print(
            f"{name:>10}: validation AUC {mean['validation_roc_auc']:.4f} EER {mean['validation_eer']:.2%}, real "
            f"pairs right {real[0]}/{real[1]} | test AUC {mean['roc_auc']:.4f} EER {mean['eer']:.2%} one-shot "
            f"{mean['one_shot_accuracy']:.2%} FA {mean['false_accept_rate']:.2%} FR {mean['false_reject_rate']:.2%}"
        )
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"folds": rows, "mean": means, "tuning": tuning}, indent=2))


if __name__ == "__main__":
    main()
