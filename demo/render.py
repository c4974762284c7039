"""Answers in words: verdicts, ranking tables, gallery summaries, the About panel and the map's note."""

from __future__ import annotations

import html
import re
from pathlib import Path

from siamese.distances import similarity_from_distance
from siamese.evaluation.embedding_map import PLACEMENT_METHOD
from siamese.modeling.card import FOLDED_KEYS, THRESHOLD_KEYS, format_value, metric_label
from siamese.search.gallery import Ranking
from siamese.serving import (
    DrawnMap,
    GalleryAnswer,
    GalleryState,
    ModelSpec,
    PairComparison,
    model_kind,
    pair_threshold,
)
from siamese.serving.maps import MAP_NEIGHBOURS

MAP_METHOD = (
    "Method: scikit-learn's Barnes-Hut t-SNE of the embeddings (PCA start, seed 0, 500 iterations), drawn with "
    "WebGL above 2,000 points."
)
# A file-system path in free text: any run of non-space characters holding a slash.
_PATH_PATTERN = re.compile(r"[^\s`'\",;()]*/[^\s`'\",;()]*")


def without_paths(text: str) -> str:
    """`text` with every path (any word holding a slash) replaced by its last part, so no machine path shows."""
    return _PATH_PATTERN.sub(lambda match: Path(match.group(0)).name or "…", text)


def with_cautions(text: str, cautions: list[str]) -> str:
    return text + "".join(f"\n\n{caution}" for caution in cautions)


def pair_markdown(comparison: PairComparison) -> str:
    """The pair verdict with its notes (which face of several was used) and cautions."""
    verdict = verdict_markdown(comparison.result, comparison.calibration)
    return with_cautions(verdict, [html.escape(note) for note in comparison.notes] + comparison.cautions)


def verdict_markdown(result: dict, calibration: dict | None) -> str:
    """The pair verdict in words, with the error rates measured at its threshold on unseen test pairs."""
    distance, threshold = result["distance"], result["threshold"]
    if threshold is None:
        return f"## Distance {distance:.4g}\nThis model has no calibrated threshold, so no verdict."
    word, relation = ("Same", "≤") if result["same"] else ("Different", ">")
    text = (
        f"## {word}\nDistance **{distance:.4g}** {relation} threshold {threshold:.4g}; "
        f"similarity {result['similarity']:.2f} (0.5 at the threshold)."
    )
    if result.get("false_accept_rate") is not None:
        test = (calibration or {}).get("test", {}).get("at_threshold", {})
        text += (
            f"\n\nAt this threshold, on {test.get('genuine_pairs', 0) + test.get('impostor_pairs', 0):,} test pairs "
            f"the model never saw, **{result['false_accept_rate']:.1%}** of different-class pairs were called "
            f"*same* and **{result['false_reject_rate']:.1%}** of same-class pairs were called *different*. "
            f"The threshold was chosen on {(calibration or {}).get('measured_on', 'validation images')}."
        )
    return text


def ranking_rows(ranking: Ranking, threshold: float | None) -> list[list]:
    """The "Top matches" table: rank, label, distance, similarity (when calibrated) and file name."""
    return [
        [
            position + 1,
            match.label,
            round(match.distance, 4),
            round(float(similarity_from_distance(match.distance, threshold)), 3) if threshold else None,
            match.name,
        ]
        for position, match in enumerate(ranking.matches)
    ]


def ranking_markdown(ranking: Ranking) -> str:
    """The gallery verdict in words: best label and margin, or "no match"."""
    best = ranking.matches[0]
    threshold = f" (threshold {ranking.threshold:.4g})" if ranking.threshold is not None else ""
    if not ranking.is_match:
        return (
            f"## No match\nEven the nearest reference, **{html.escape(best.label)}** ({html.escape(best.name)}), "
            f"lies at distance {best.distance:.4g}, beyond the threshold {ranking.threshold:.4g}."
        )
    text = f"## {html.escape(best.label)}\nNearest reference {html.escape(best.name)} at distance {best.distance:.4g}"
    text += threshold + "."
    if ranking.margin is not None:
        text += f" Margin to the next label ({html.escape(ranking.runner_up_label)}): **{ranking.margin:.4g}**."
    else:
        text += " The gallery has one label, so there is no margin."
    if ranking.caution:
        text += (
            f"\n\n**Caution:** the next label is within the caution margin {ranking.caution_margin:.4g}, so the "
            f"answer may be {html.escape(ranking.runner_up_label)} instead. "
        )
    if ranking.caution_margin is not None:
        text += (
            f"\n\n*Rule: no match beyond distance {ranking.threshold:.4g}; a caution when the next label is closer "
            f"than {ranking.caution_margin:.4g} behind. Both were chosen on validation people the model never "
            "trained on (the margin flags 90% of the wrong answers seen there).*"
        )
    return text


def query_markdown(answer: GalleryAnswer) -> str:
    """A gallery query's answer in words: the ranking, or for a photo with several faces each face's name, largest
    first (numbered as boxed in the picture), then the largest face's ranking."""
    if len(answer.faces) < 2:
        return ranking_markdown(answer.ranking)
    names = [face.name if face.name is not None else "no match" for face in answer.faces]
    lines = [f"## {html.escape(', '.join(names))}", f"The query has {len(answer.faces)} faces, largest first:"]
    for position, face in enumerate(answer.faces, start=1):
        best, threshold = face.ranking.matches[0], face.ranking.threshold
        if face.name is None:
            lines.append(
                f"{position}. no match: the nearest reference, {html.escape(best.label)} ({html.escape(best.name)}), "
                f"lies at distance {best.distance:.4g}, beyond the threshold {threshold:.4g}"
            )
        else:
            lines.append(
                f"{position}. **{html.escape(face.name)}**: nearest reference {html.escape(best.name)} at distance "
                f"{best.distance:.4g}"
            )
    largest = ranking_markdown(answer.ranking).split("\n", 1)[1]
    return "\n".join(lines) + f"\n\nFace 1, the largest (the table and matches below are its own): {largest}"


def match_thumbnails(state: GalleryState, ranking: Ranking) -> list[tuple]:
    """Each match's thumbnail with its label and distance; none for a saved gallery, which keeps no images."""
    if state.index is not None:
        return []
    return [(state.thumbnails[match.index], f"{match.label} · d={match.distance:.3g}") for match in ranking.matches]


def gallery_summary(state: GalleryState) -> str:
    """An embedded gallery's size and labels."""
    counts = state.gallery.label_counts()
    return (
        f"Gallery: **{len(state.gallery)}** images, **{len(counts)}** labels, embedded once with `{state.model_name}`. "
        + ", ".join(f"{html.escape(label)} ×{count}" for label, count in sorted(counts.items())[:20])
        + (" …" if len(counts) > 20 else "")
    )


def saved_gallery_summary(state: GalleryState) -> str:
    """A saved gallery file's size, labels, model and search."""
    index = state.index
    counts = len(set(index.labels))
    made_with = f" (embedded with `{index.model_id}`)" if index.model_id else ""
    return (
        f"Saved gallery: **{len(index):,}** embeddings, **{counts:,}** labels{made_with}, searched with "
        f"{'an exact search' if index.backend == 'exact' else 'a FAISS index'}. Queries are embedded with "
        f"`{state.model_name}`: use the model that made the gallery."
    )


def map_note(drawn: DrawnMap) -> str:
    """How the map was made, from which images, and what was placed on it."""
    if drawn.source is None:
        note = "No reference set for this model here: the map shows only your own images, coloured by file name."
    else:
        note = f"{MAP_METHOD} Reference set: {len(drawn.embedding_map)} images from {without_paths(drawn.source)}" + (
            " (map from the cache)." if drawn.cached else "."
        )
    if drawn.placed is not None:
        note += " " + PLACEMENT_METHOD.format(neighbours=MAP_NEIGHBOURS)
    return note + " Click a point to see its image."


def model_info_markdown(model_name: str, model, spec: ModelSpec, metrics: dict | None) -> str:
    """Markdown for the "About this model" panel: data, test metrics, threshold; no machine paths."""
    metrics = metrics or {}
    dataset = metrics.get("dataset") or model.training_info.get("dataset") or {}
    origin = "bundled with the app" if spec.is_local else f"from the Hugging Face Hub: `{spec.source}`"
    lines = [f"**{model_name}**, {origin}" + (f" @ `{spec.revision}`" if spec.revision else "")]
    lines.append(
        f"- Network: {model.architecture}, {model.embedding_dim}-d embeddings"
        + (f" (whole image + {model.parts} stripes)" if model.parts else "")
        + f", input {model.in_channels}x{model.image_size[0]}x{model.image_size[1]} ({model_kind(model)})"
    )
    if dataset:
        trained_on = f"- Trained on: {dataset.get('name', '?')}"
        if dataset.get("test"):
            trained_on += f"; tested on {dataset['test']}"
        lines.append(trained_on)
    test = metrics.get("test") or {}
    shown = [
        key
        for key in test
        if key not in FOLDED_KEYS and key not in THRESHOLD_KEYS and isinstance(test[key], int | float)
    ]
    if shown:
        figures = "; ".join(f"{metric_label(key, test)} {format_value(key, test[key])}" for key in shown[:8])
        lines.append(f"- Test figures: {figures}")
    lines += _threshold_lines(model)
    command = (metrics.get("training") or {}).get("command") or model.training_info.get("command")
    if command:
        lines.append(f"- Trained with: `{without_paths(command)}`")
    return "\n".join(lines)


def _threshold_lines(model) -> list[str]:
    threshold = pair_threshold(model)
    if threshold is None:
        return ["- No calibrated threshold: the app shows distances but gives no same/different verdict."]
    lines = [
        f"- Verdict threshold: distance ≤ {threshold:.4g} means *same* (the validation equal-error point), "
        f"chosen on {model.calibration.get('measured_on', 'held-out pairs')}"
    ]
    expected = (model.calibration.get("test") or {}).get("at_threshold")
    if expected:
        lines.append(
            f"- At that threshold on unseen test pairs: {expected['false_accept_rate']:.1%} false accepts, "
            f"{expected['false_reject_rate']:.1%} false rejects"
        )
    return lines
