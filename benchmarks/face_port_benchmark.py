"""dlib's face descriptor, ported to PyTorch, on the AT&T faces' four folds and the shared real photos.

No training: each photo goes through the library's own face step (dlib's HOG detector, 5 landmarks, the 150x150
alignment) and the ported network, as `SiameseModel.encode` runs it. For each 10-subject AT&T fold held out in
turn, the thresholds are chosen on validation data only: the other 30 AT&T subjects and the photos of
`real_faces/people` (five public figures). The fold's subjects are then the test set: ROC AUC, EER, 10-way
one-shot (200 draws), and the false-accept and false-reject rates at the stored threshold. Photos where no face
is found are counted and left out.

  python benchmarks/face_port_benchmark.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from siamese.data.images import NoFaceError  # noqa: E402
from siamese.distances import paired_distances  # noqa: E402
from siamese.evaluation.calibration import calibrate, measure_on_test  # noqa: E402
from siamese.evaluation.verification import verification_report  # noqa: E402
from siamese.modeling.face_port import dlib_face_model  # noqa: E402

FOLDS = [[f"s{number}" for number in range(first, first + 10)] for first in (1, 11, 21, 31)]


def embed_photos(model, paths: list[Path]) -> tuple[torch.Tensor, list[bool]]:
    """Embeddings (N, 128) of the photos with a face (found[i] says which), one at a time as a user's would be."""
    embeddings, found = [], []
    for path in paths:
        try:
            embeddings.append(model.encode(str(path))[0])  # (128,)
            found.append(True)
        except NoFaceError:
            found.append(False)
    return torch.stack(embeddings), found


def labelled(paths: list[Path], labels: list[str], found: list[bool]) -> tuple[list[str], list[Path]]:
    kept = [(label, path) for label, path, ok in zip(labels, paths, found, strict=True) if ok]
    return [label for label, _ in kept], [path for _, path in kept]


def real_photo_pairs(embeddings: torch.Tensor, labels: list[str], threshold: float) -> dict:
    """Every same/different pair of the real photos, judged at `threshold`."""
    pairs = list(combinations(range(len(labels)), 2))
    first = torch.tensor([a for a, _ in pairs])
    second = torch.tensor([b for _, b in pairs])
    distances = paired_distances(embeddings[first], embeddings[second])  # (P,)
    same = torch.tensor([labels[a] == labels[b] for a, b in pairs])
    right = (distances <= threshold) == same
    return {
        "pairs": len(pairs),
        "same_pairs": int(same.sum()),
        "right": int(right.sum()),
        "largest_same_distance": float(distances[same].max()),
        "smallest_different_distance": float(distances[~same].min()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args()
    root = Path(arguments.data_root)
    torch.set_num_threads(2)
    model = dlib_face_model()

    att_paths = [
        root / "att_faces" / f"s{person}" / f"{photo}.pgm" for person in range(1, 41) for photo in range(1, 11)
    ]
    att_labels = [path.parent.name for path in att_paths]
    real_paths = sorted((root / "real_faces" / "people").glob("*/*"))
    real_labels = [path.parent.name for path in real_paths]
    started = time.perf_counter()
    att_embeddings, att_found = embed_photos(model, att_paths)
    real_embeddings, real_found = embed_photos(model, real_paths)
    seconds = time.perf_counter() - started
    att_labels, _ = labelled(att_paths, att_labels, att_found)
    real_labels, _ = labelled(real_paths, real_labels, real_found)
    missed = [
        str(path.relative_to(root))
        for path, ok in zip(att_paths + real_paths, att_found + real_found, strict=True)
        if not ok
    ]
    count = len(att_paths) + len(real_paths)
    print(f"Embedded {count} photos in {seconds:.1f} s; no face found in {len(missed)}: {missed}")

    names = sorted(set(att_labels) | set(real_labels))
    ids = {name: index for index, name in enumerate(names)}
    results = []
    for fold in FOLDS:
        test_mask = torch.tensor([label in fold for label in att_labels])
        validation = torch.cat([att_embeddings[~test_mask], real_embeddings])  # (V, 128)
        validation_labels = torch.tensor(
            [ids[label] for label, test in zip(att_labels, test_mask.tolist(), strict=True) if not test]
            + [ids[label] for label in real_labels]
        )
        measured_on = f"AT&T subjects outside {fold[0]}-{fold[-1]} and the real_faces/people photos"
        calibration = calibrate(validation, validation_labels, measured_on, open_set=True, seed=arguments.seed)
        test = att_embeddings[test_mask]
        test_labels = torch.tensor([ids[label] for label in att_labels if label in fold])
        report = verification_report(test, test_labels, ways=10, draws=200, seed=arguments.seed)
        measured = measure_on_test(test, test_labels, calibration, open_set=True, seed=arguments.seed)
        at_threshold = measured["at_threshold"]
        row = {
            "fold": f"{fold[0]}-{fold[-1]}",
            "test_photos": len(test),
            "roc_auc": report["roc_auc"],
            "eer": report["eer"],
            "one_shot_accuracy": report["one_shot_accuracy"],
            "threshold": calibration["threshold"],
            "false_accept_rate": at_threshold["false_accept_rate"],
            "false_reject_rate": at_threshold["false_reject_rate"],
            "real_photo_pairs": real_photo_pairs(real_embeddings, real_labels, calibration["threshold"]),
        }
        results.append(row)
        real = row["real_photo_pairs"]
        print(
            f"{row['fold']}: {row['test_photos']} test photos, ROC AUC {row['roc_auc']:.4f}, EER {row['eer']:.2%}, "
            f"one-shot {row['one_shot_accuracy']:.2%}; threshold {row['threshold']:.3f} from validation: "
            f"false accepts {row['false_accept_rate']:.2%}, false rejects {row['false_reject_rate']:.2%}; "
            f"real photo pairs right {real['right']}/{real['pairs']}",
            flush=True,
        )
    mean = {key: sum(row[key] for row in results) / len(results) for key in
            ("roc_auc", "eer", "one_shot_accuracy", "false_accept_rate", "false_reject_rate")}  # fmt: skip
    print(
        f"mean: ROC AUC {mean['roc_auc']:.4f}, EER {mean['eer']:.2%}, one-shot {mean['one_shot_accuracy']:.2%}, "
        f"false accepts {mean['false_accept_rate']:.2%}, false rejects {mean['false_reject_rate']:.2%}"
    )
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"folds": results, "mean": mean, "no_face": missed}, indent=2))


if __name__ == "__main__":
    main()
