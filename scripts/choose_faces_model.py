"""Record in a faces model folder why it was shipped: the candidates' validation figures from the four-fold run.

python benchmarks/face_port_benchmark.py --data-root ../shared/data --json runs/faces_folds.json
python scripts/choose_faces_model.py --folds runs/faces_folds.json --model pretrained/faces

The candidate with the best mean validation figures over the four folds wins: ROC AUC first, then the EER, then
the real photo pairs right (test figures play no part). The folder must hold the winner (trained with its
preset); its metrics.json gains a "choice" record and its card a "Why this model" section.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from face_port_benchmark import PIPELINES  # noqa: E402

from siamese.modeling.pretrained import load_model, read_metrics, save_model  # noqa: E402
from siamese.training.reporting import write_history  # noqa: E402

BENCHMARK_COMMAND = "python benchmarks/face_port_benchmark.py --data-root ../shared/data"


def validation_summary(folds: dict[str, list[dict]]) -> dict[str, dict]:
    """Per candidate: mean validation ROC AUC and EER over the folds, and the real photo pairs right in all."""
    summary = {}
    for name, rows in folds.items():
        summary[name] = {
            "validation_roc_auc": sum(row["validation_roc_auc"] for row in rows) / len(rows),
            "validation_eer": sum(row["validation_eer"] for row in rows) / len(rows),
            "real_pairs_right": sum(row["real_pairs_right"] for row in rows),
            "real_pairs": sum(row["real_pairs"] for row in rows),
            "folds": len(rows),
        }
    return summary


def best(summary: dict[str, dict]) -> str:
    def rank(name: str) -> tuple:
        figures = summary[name]
        return (-figures["validation_roc_auc"], figures["validation_eer"], -figures["real_pairs_right"])

    return min(summary, key=rank)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", required=True, help="the JSON that face_port_benchmark.py --json wrote")
    parser.add_argument("--model", default="pretrained/faces", help="the model folder to annotate")
    arguments = parser.parse_args()
    folds = json.loads(Path(arguments.folds).read_text())["folds"]
    summary = validation_summary({name: rows for name, rows in folds.items() if name in PIPELINES})
    chosen = best(summary)
    model = load_model(arguments.model)
    preset = model.training_info.get("preset")
    metrics = read_metrics(arguments.model) or {}
    if preset != PIPELINES[chosen]:
        raise SystemExit(
            f"{arguments.model} was made with --preset {preset}, but the validation figures choose {chosen} "
            f"(--preset {PIPELINES[chosen]}): train that one into the folder first"
        )
    others = ", ".join(name for name in summary if name != chosen)
    figures = summary[chosen]
    metrics["choice"] = {
        "chosen": chosen,
        "summary": (
            f"Shipped: the {chosen} model. Over the four AT&T folds ({BENCHMARK_COMMAND}), it had the best "
            f"validation figures (mean ROC AUC {figures['validation_roc_auc']:.4f}, EER "
            f"{figures['validation_eer']:.2%}) against {others}. Validation is 4 AT&T subjects per fold outside "
            f"its test subjects and the photos of real_faces/people; test figures played no part in the choice."
        ),
        "candidates": summary,
        "command": BENCHMARK_COMMAND,
    }
    command = (metrics.get("training") or {}).get("command") or model.training_info.get("command", "")
    folder = save_model(model, arguments.model, metrics=metrics, command=command)
    write_history(metrics.get("history") or [], folder)
    print(metrics["choice"]["summary"])


if __name__ == "__main__":
    main()
