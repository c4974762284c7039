"""The model card (README.md) of a saved model: Hub metadata plus a body written from what was measured.

Every figure in the card comes from `metrics` (what training measured) or the model's config;
a metric that is absent is left out, never estimated.
"""

from __future__ import annotations

import numbers

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from siamese.data.images import aligns_faces

LIBRARY_NAME = "siamese-similarity"
BASE_TAGS = ["siamese-network", "metric-learning", "image-similarity"]
TASK_TAGS = {"digits": ["mnist"], "faces": ["faces", "face-verification"], "folder": []}
MNIST_HUB_DATASET = "ylecun/mnist"

# key in metrics["test"] -> (label in the card, shown as a percentage)
TEST_METRICS = {
    "knn_accuracy": ("kNN accuracy", True),
    "precision_at_1": ("Precision@1", True),
    "map_at_r": ("MAP@R", True),
    "roc_auc": ("ROC AUC (same vs different pairs)", True),
    "eer": ("Equal error rate (EER)", True),
    "one_shot_accuracy": ("One-shot accuracy", True),
    "false_accept_rate": ("False-accept rate at the stored threshold", True),
    "false_reject_rate": ("False-reject rate at the stored threshold", True),
    "accuracy_at_threshold": ("Pair accuracy at the stored threshold", True),
    "false_accept_rate_strict": ("False-accept rate at the strict threshold", True),
    "false_reject_rate_strict": ("False-reject rate at the strict threshold", True),
    "open_set_known_identified": ("Open-set gallery: known people named correctly", True),
    "open_set_unknown_rejected": ("Open-set gallery: unknown people answered 'no match'", True),
    "threshold": ("Stored threshold (chosen on validation)", False),
    "threshold_strict": ("Strict threshold (chosen on validation)", False),
}
# Shown inside another metric's label rather than as rows of their own.
FOLDED_KEYS = {"knn_k", "one_shot_ways", "one_shot_draws", "genuine_pairs", "impostor_pairs"}
# Thresholds are operating points, not scores: they stay out of the Hub's eval results.
THRESHOLD_KEYS = {"threshold", "threshold_strict", "threshold_eer", "threshold_best_accuracy"}


def render_model_card(config: dict, metrics: dict, command: str, repo_id: str | None = None) -> str:
    """README.md for a model: YAML metadata the Hub reads, then the card body in Markdown."""
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise TypeError(f"config and metrics must be dicts, got {type(config).__name__}, {type(metrics).__name__}")
    task = metrics.get("task") or _task_from_config(config)
    dataset = metrics.get("dataset") or {}
    test = {key: value for key, value in (metrics.get("test") or {}).items() if _is_number(value)}
    model_name = (repo_id or "").split("/")[-1] or f"siamese-{config.get('architecture', 'embedding')}-{task}"

    data = ModelCardData(
        library_name=LIBRARY_NAME,
        license="mit",
        tags=BASE_TAGS + TASK_TAGS.get(task, []),
        datasets=[MNIST_HUB_DATASET] if task == "digits" else None,
        pipeline_tag="image-feature-extraction",
        model_name=model_name,
        eval_results=_eval_results(task, dataset, test) or None,
    )
    sections = [
        _title_section(model_name, config, task),
        _origin_section(metrics.get("origin") or {}),
        _choice_section(metrics.get("choice") or {}),
        _data_section(task, dataset, trained=(metrics.get("training") or {}).get("epochs") != 0),
        _results_section(test, dataset),
        _calibration_section(config),
        _training_section(metrics.get("training") or {}, command),
        _history_section(metrics.get("history") or []),
        _usage_section(config, repo_id),
        _limitations_section(task, config),
    ]
    body = "\n\n".join(section for section in sections if section)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n"))


def _task_from_config(config: dict) -> str:
    kind = (config.get("preprocessing") or {}).get("kind")
    return kind if kind in TASK_TAGS else "folder"


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def format_value(key: str, value) -> str:
    """A metric as the card shows it: fractions as percentages, distances and counts as they are."""
    is_percentage = TEST_METRICS.get(key, ("", False))[1]
    if is_percentage:
        return f"{value * 100:.2f}%"
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    return f"{value:.4g}"


def metric_label(key: str, test: dict) -> str:
    label = TEST_METRICS.get(key, (key.replace("_", " "), False))[0]
    if key == "knn_accuracy" and "knn_k" in test:
        label += f" (k = {test['knn_k']})"
    if key == "one_shot_accuracy" and "one_shot_ways" in test:
        label += f" ({test['one_shot_ways']}-way)"
    return label


def _eval_results(task: str, dataset: dict, test: dict) -> list[EvalResult]:
    dataset_name = dataset.get("name") or task
    dataset_type = {"digits": MNIST_HUB_DATASET, "faces": "att_faces"}.get(task, "imagefolder")
    return [
        EvalResult(
            task_type="image-feature-extraction",
            task_name="Image similarity",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=key,
            metric_name=metric_label(key, test),
            metric_value=value,
        )
        for key, value in test.items()
        if key in TEST_METRICS and key not in THRESHOLD_KEYS
    ]


def _title_section(model_name: str, config: dict, task: str) -> str:
    height, width = (config.get("image_size") or [None, None])[:2]
    channels = config.get("in_channels", 1)
    image = f"{height}x{width} {'grayscale' if channels == 1 else f'{channels}-channel'} image"
    normalized = ", scaled to unit length" if config.get("normalize") else ""
    parts = int(config.get("parts") or 0)
    if parts:
        chunk = int(config.get("embedding_dim", 0)) // (parts + 1)
        normalized += (
            f" (one {chunk}-dimensional part for the whole image and one for each of {parts} horizontal stripes, "
            f"each trained to tell the classes apart on its own)"
        )
    purpose = {
        "digits": "Images of the same digit land close together, different digits far apart.",
        "faces": (
            "Photos of the same person land close together and photos of different people far apart, "
            "so comparing a distance with a threshold answers 'same person?' (face verification), "
            "also for people never seen during training."
        ),
    }.get(task, "Images of the same class land close together, images of different classes far apart.")
    return (
        f"# {model_name}\n\n"
        f"A Siamese embedding network (`{config.get('architecture')}` architecture) that maps a {image} to a "
        f"{config.get('embedding_dim')}-dimensional embedding{normalized}. Two images are compared by the "
        f"Euclidean distance between their embeddings: the smaller the distance, the more similar the images. "
        f"{purpose}"
    )


def _origin_section(origin: dict) -> str:
    """Where weights made elsewhere come from, and how they were converted and checked."""
    if not origin:
        return ""
    lines = ["## Origin", "", f"- Weights: {origin['credit']}"]
    if origin.get("command"):
        lines.append(f"- Converted into this library's format (train.py uses the same reader): `{origin['command']}`")
    lines += [f"- {line}" for line in origin.get("checks", [])]
    return "\n".join(lines)


def _choice_section(choice: dict) -> str:
    """Why this model was shipped rather than the other candidates: their figures on validation data."""
    candidates = choice.get("candidates") or {}
    if not candidates:
        return ""
    lines = [
        "## Why this model",
        "",
        f"{choice['summary']}",
        "",
        "| Candidate | Validation ROC AUC | Validation EER | Real photo pairs right (validation) |",
        "|---|---|---|---|",
    ]
    for name, figures in candidates.items():
        chosen = " (shipped)" if name == choice.get("chosen") else ""
        lines.append(
            f"| {name}{chosen} | {figures['validation_roc_auc']:.4f} | {figures['validation_eer']:.2%} | "
            f"{figures['real_pairs_right']}/{figures['real_pairs']} |"
        )
    return "\n".join(lines)


def _data_section(task: str, dataset: dict, trained: bool = True) -> str:
    if not dataset:
        return ""
    lines = ["## Data", ""]
    if "name" in dataset:
        source = f" ({dataset['source']})" if dataset.get("source") else ""
        lines.append(f"- Data set: {dataset['name']}{source}")
    if "train_size" in dataset:
        unused = "" if trained else " (set aside for training, but not used: 0 epochs)"
        lines.append(f"- Training images: {dataset['train_size']:,}{unused}")
    if "validation_size" in dataset:
        extra = dataset.get("extra_validation") or {}
        extra_note = f", {extra['size']} of them from {extra['source']}" if extra else ""
        lines.append(f"- Validation images (thresholds chosen here): {dataset['validation_size']:,}{extra_note}")
    if "test_size" in dataset:
        lines.append(f"- Test images: {dataset['test_size']:,}")
    if dataset.get("test"):
        lines.append(f"- Test split: {dataset['test']}")
    if dataset.get("test_classes"):
        who = "Subjects held out for testing, never seen in training" if task == "faces" else "Test classes"
        lines.append(f"- {who}: {', '.join(str(name) for name in dataset['test_classes'])}")
    return "\n".join(lines)


def _results_section(test: dict, dataset: dict) -> str:
    keys = [key for key in TEST_METRICS if key in test]
    keys += [key for key in test if key not in TEST_METRICS and key not in FOLDED_KEYS]
    if not keys:
        return ""
    where = f" on {dataset['test']}" if dataset.get("test") else " on the held-out test set"
    rows = [f"| {metric_label(key, test)} | {format_value(key, test[key])} |" for key in keys]
    return "\n".join([f"## Results\n\nMeasured after training{where}:\n", "| Metric | Value |", "|---|---|", *rows])


def _calibration_section(config: dict) -> str:
    calibration = config.get("calibration") or {}
    threshold = calibration.get("threshold")
    if not _is_number(threshold):
        return ""
    distance = calibration.get("distance", "euclidean")
    measured_on = calibration.get("measured_on", "held-out pairs")
    lines = [
        "## Verification threshold",
        "",
        f"Two images are judged to show the same class when their {distance} distance is at or below "
        f"**{threshold:.4g}** (`calibration.threshold` in `config.json`). It is the equal-error point of "
        f"validation pairs: {measured_on}. The test set played no part in choosing it.",
    ]
    extra = (calibration.get("validation") or {}).get("extra")
    if extra:
        rates = extra["at_threshold"]
        pairs = rates["genuine_pairs"] + rates["impostor_pairs"]
        lines += [
            "",
            f"On the extra validation images (`{extra['source']}`: {extra['images']} images of {extra['classes']} "
            f"classes, part of the validation set above), {round(rates['accuracy'] * pairs)} of their {pairs} pairs "
            f"are right at this threshold ({rates['false_accept_rate']:.2%} false accepts, "
            f"{rates['false_reject_rate']:.2%} false rejects).",
        ]
    test = calibration.get("test") or {}
    at_threshold, at_strict = test.get("at_threshold"), test.get("at_threshold_strict")
    if at_threshold:
        lines += [
            "",
            "| Threshold (chosen on validation) | Distance | Test false accepts | Test false rejects | Test accuracy |",
            "|---|---|---|---|---|",
            f"| Equal error on validation | {threshold:.4g} | {at_threshold['false_accept_rate']:.2%} | "
            f"{at_threshold['false_reject_rate']:.2%} | {at_threshold['accuracy']:.2%} |",
        ]
        if at_strict and _is_number(calibration.get("threshold_strict")):
            target = calibration.get("target_false_accept_rate", 0.01)
            lines.append(
                f"| At most {target:.0%} false accepts on validation | {calibration['threshold_strict']:.4g} | "
                f"{at_strict['false_accept_rate']:.2%} | {at_strict['false_reject_rate']:.2%} | "
                f"{at_strict['accuracy']:.2%} |"
            )
        lines += [
            "",
            f"Test rates are over {at_threshold['genuine_pairs']:,} same-class and "
            f"{at_threshold['impostor_pairs']:,} different-class test pairs.",
        ]
    if _is_number(calibration.get("gallery_threshold")):
        margin = calibration.get("caution_margin")
        rule = (
            f" and a caution when the second-nearest label is less than {margin:.4g} farther away (a margin that "
            f"flagged {calibration.get('caution_share', 0.9):.0%} of the wrong answers on validation galleries)"
            if _is_number(margin)
            else ""
        )
        lines += [
            "",
            f'Galleries answer "no match" beyond distance **{calibration["gallery_threshold"]:.4g}**{rule}. The '
            "gallery threshold balances, on simulated validation galleries (half the validation classes enrolled "
            "with 3 images each, the other half unknown), known people missed against unknown people named.",
        ]
        open_set = test.get("open_set") or {}
        if _is_number(open_set.get("known_identified")) and _is_number(open_set.get("unknown_rejected")):
            lines.append(
                f"On test galleries built the same way from the test classes, {open_set['known_identified']:.1%} "
                f"of known probes were named correctly and {open_set['unknown_rejected']:.1%} of unknown probes "
                'got "no match".'
            )
    return "\n".join(lines)


def _training_section(training: dict, command: str) -> str:
    if training.get("epochs") == 0:
        return (
            "## Training\n\nNot trained here (0 epochs): the weights are used as they came (see Origin); only the "
            "thresholds were chosen, on validation data. The exact command that produced this folder:\n\n"
            f"```bash\n{command}\n```"
        )
    facts = []
    if "epochs" in training:
        facts.append(f"{training['epochs']} epochs")
    if _is_number(training.get("seconds")):
        facts.append(f"{training['seconds']:.1f} s")
    if training.get("device"):
        facts.append(f"on {training['device']}")
    if training.get("precision"):
        facts.append(f"in {training['precision']}")
    summary = f"Trained for {', '.join(facts)}. " if facts else ""
    return f"## Training\n\n{summary}The exact command that produced these weights:\n\n```bash\n{command}\n```"


def _history_section(history: list[dict]) -> str:
    rows = [record for record in history if isinstance(record, dict)]
    columns = [key for key in ("epoch", "loss", "knn_accuracy", "roc_auc", "eer") if any(key in r for r in rows)]
    if len(columns) < 2:
        return ""
    lines = ["## Training history", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in rows:
        cells = [format_value(key, record[key]) if _is_number(record.get(key)) else "" for key in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_FACE_STEP = (
    'Faces are found and aligned by dlib (`pip install ".[faces]"`): each photo\'s largest face becomes a 150x150 '
    "colour chip, and a photo where no face is found is refused with an error that names it. "
)


def _usage_section(config: dict, repo_id: str | None) -> str:
    name = repo_id or "path/to/model-folder"
    channels = config.get("in_channels", 1)
    height, width = (config.get("image_size") or ["H", "W"])[:2]
    calibrated = _is_number((config.get("calibration") or {}).get("threshold"))
    last_line = (
        'print(model.verify("a.png", "b.png"))  # same?, distance, threshold, and the error rates measured there'
        if calibrated
        else 'print(model.similarity(["a.png"], ["b.png"]))  # distances: this model has no calibrated threshold'
    )
    return (
        "## How to use\n\n"
        "Install the `siamese` package of the project that trained this model (`pip install .` in its checkout, "
        'or `pip install "git+<its repository url>"`), then:\n\n'
        "```python\n"
        "from siamese import SiameseModel\n\n"
        f'model = SiameseModel.from_pretrained("{name}")  # strict, safetensors only\n'
        f"{last_line}\n"
        "```\n\n"
        f"{_FACE_STEP if aligns_faces(config.get('preprocessing')) else ''}"
        f"`model.encode(images)` takes file paths, PIL images, numpy arrays or tensors, prepares them as the model "
        f"was trained ({height}x{width}, {channels} channel{'s' if channels != 1 else ''}), and returns the "
        "embeddings. `config.json` records the preprocessing (`preprocessing`), the thresholds chosen on validation "
        "data (`calibration`) and what the weights were trained on (`training`); `metrics.json` holds every "
        "measured figure."
    )


def _limitations_section(task: str, config: dict) -> str:
    points = [
        "Intended for image similarity search and same/different verification on images like the training "
        "data, for research and teaching.",
        "The verification threshold was chosen on validation data like the training data; on other kinds of "
        "images, measure the error rates and set a new threshold before trusting the verdicts.",
        "The figures above come from one training run on one held-out split; expect them to vary with the "
        "seed and to drop on images unlike the training data.",
    ]
    if task == "digits":
        points.append(
            "MNIST-style input is expected: a single centred handwritten digit, light on a dark background, "
            "28x28 grayscale. Photos of digits need the same preprocessing first."
        )
    if task == "faces" and aligns_faces(config.get("preprocessing")):
        points.append(
            "A face descriptor trained by dlib on many faces, calibrated here on a few dozen photos: grey frontal "
            "AT&T portraits and 12 colour photos of five public figures. It is not a face recognition system "
            "for decisions: do not use it to identify or track real people without their consent, or for "
            "decisions about people; accuracy differs across groups of people and conditions it was never "
            "measured on. Faces the detector misses (small, turned away, in the dark) get no answer."
        )
    elif task == "faces":
        points.append(
            "Trained on a small set of frontal grayscale face photos taken under controlled conditions; it is "
            "a teaching model, not a face recognition system. Do not use it to identify or track real people "
            "without their consent, or for decisions about people; accuracy differs across groups of people "
            "and conditions it was never measured on."
        )
    if task == "folder":
        points.append("Only the classes and kind of images in the training folders were measured.")
    preprocessing = config.get("preprocessing") or {}
    if preprocessing:
        points.append(
            "Inputs must be preprocessed exactly as `config.json` says (`preprocessing`: "
            + ", ".join(f"{key} = {value}" for key, value in preprocessing.items())
            + ")."
        )
    return "## Intended use and limitations\n\n" + "\n".join(f"- {point}" for point in points)
