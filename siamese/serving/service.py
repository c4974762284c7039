"""Every answer a similarity server gives, without a web framework: pairs, galleries and maps.

A front end picks the inputs, makes one call here, and renders what comes back. Mistakes a user can fix come
back as exceptions whose message is meant for them: ServingError (siamese.serving.messages), ImageError,
UploadError, GalleryFileError and ModelLoadError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from siamese.data import examples as example_data
from siamese.distances import similarity_from_distance
from siamese.evaluation.calibration import verdict
from siamese.search.gallery import Gallery, Ranking, rank_in_index
from siamese.search.index import GalleryIndex
from siamese.serving.cache import EmbeddingCache
from siamese.serving.faces import NamedFace, name_faces, used_face_note
from siamese.serving.gallery import (
    MAX_GALLERY_IMAGES,
    GalleryImages,
    GallerySource,
    GalleryState,
    LabelledUploads,
    single_label_warning,
)
from siamese.serving.images import (
    ImageSlot,
    PreparedInput,
    check_example_domain,
    is_face_model,
    model_kind,
    prepare_usable_image,
    thumbnail,
)
from siamese.serving.maps import MAX_MAP_IMAGES, DrawnMap, EmbeddingMaps, no_progress
from siamese.serving.messages import GalleryError, LoggedNotices, MapError, Notices
from siamese.serving.models import ModelRegistry, ModelSpec, gallery_thresholds
from siamese.serving.references import ExampleSources, OutOfDistributionChecks, ReferenceImages


@dataclass
class PairComparison:
    """Two images compared: what the model saw (uint8 (C, H, W) each), their distance, the verdict (`result`:
    siamese.evaluation.calibration.verdict with `similarity` and `out_of_distribution`) and any cautions; the
    inputs they came from (with the faces a face model used) and notes on them (which face of several)."""

    images: list[torch.Tensor]
    distance: float
    result: dict
    cautions: list[str]
    calibration: dict | None
    inputs: list[PreparedInput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class GalleryAnswer:
    """A query ranked against a gallery (`state`, re-embedded if the model changed), with its cautions. For a face
    model, `ranking` is the largest face's, `faces` names every face of the query (largest first) and `query` is
    the photo they were found in."""

    state: GalleryState
    ranking: Ranking
    threshold: float | None
    cautions: list[str]
    faces: list[NamedFace] = field(default_factory=list)
    query: PreparedInput | None = None


class SimilarityService:
    """The models a server offers, their example images, and the caches their answers share across sessions.

    `sources`: where example images come from; `missing`: bundled models not on disk (noted, not offered).
    `notices` hears what a request should tell the user besides its answer (skipped files, re-embedding);
    `picture` makes what is kept to show of each gallery image (by default a small array).
    """

    def __init__(
        self,
        specs: list[ModelSpec],
        sources: ExampleSources | None = None,
        missing: dict[str, Path] | None = None,
        notices: Notices | None = None,
        picture: Callable[[Image.Image], object] = thumbnail,
    ):
        self.registry = ModelRegistry(specs)
        self.registry.load_local(missing)
        self.references = ReferenceImages(self.registry, sources or ExampleSources())
        self.checks = OutOfDistributionChecks(self.references)
        self.embeddings = EmbeddingCache()
        self.maps = EmbeddingMaps(capacity=8)
        self.notices = notices or LoggedNotices()
        self.picture = picture

    def model_kind(self, model_name: str | None) -> str:
        """The domain ("digits", "faces", "folder") of the model called `model_name`."""
        return model_kind(self.registry.get(model_name))

    # ----- pairs -----

    def compare_pair(self, model_name: str | None, slots: list[ImageSlot]) -> PairComparison:
        """Distance, similarity and verdict for the two images the slots hold."""
        model = self.registry.get(model_name)
        inputs = [slot.prepare_input(model_name, model) for slot in slots]
        images = [prepared.image for prepared in inputs]
        embeddings = model.encode(torch.stack(images))  # (2, D)
        distance = float((embeddings[0] - embeddings[1]).norm())
        result = verdict(distance, model.calibration)
        threshold = result["threshold"]
        if threshold is not None:
            result["similarity"] = float(similarity_from_distance(distance, threshold))
        cautions = self.checks.cautions(model_name, model, embeddings, ["image A", "image B"])
        result["out_of_distribution"] = bool(cautions)
        notes = [note for note in map(used_face_note, inputs) if note]
        return PairComparison(images, distance, result, cautions, model.calibration, inputs, notes)

    # ----- galleries -----

    def build_gallery(self, model_name: str | None, paths: list[str], captions: str | None = "") -> GalleryState:
        """Uploaded files, folders or .zip archives embedded as a gallery (see LabelledUploads.opened). What a .zip
        unpacks to is removed as soon as it is embedded, also when embedding fails; the pictures kept are copies."""
        source = GallerySource(list(paths), captions or None)
        with LabelledUploads.opened(source.paths, source.captions) as uploads:
            return self.embed_gallery(model_name, uploads, source)

    def example_gallery(self, model_name: str | None, example_kind: str, per_label: int) -> GalleryState:
        """A gallery of `per_label` example images per class, from the built-in examples of the model's domain."""
        kind = self.model_kind(model_name)
        if example_kind != kind:
            raise GalleryError(
                f"Model `{model_name}` was trained on {kind}, so the {example_kind} example gallery "
                f"would mean nothing to it: pick a {example_kind} model, or the {kind} examples."
            )
        examples = self.references.for_kind(example_kind, download=True)
        if examples is None:
            raise GalleryError(
                f"No example {example_kind} on this machine (scikit-learn's Olivetti faces are not cached and could "
                "not be downloaded). Upload your own images instead."
            )
        labels = len(examples.class_names)
        per_label = int(min(max(int(per_label), 1), MAX_GALLERY_IMAGES // labels))
        paths = example_data.gallery_examples(examples, per_label=per_label, labels=labels)
        return self.build_gallery(model_name, paths)  # named <label>_<n>.png: labelled as such uploads would be

    def saved_gallery(self, model_name: str | None, paths: list[str]) -> GalleryState:
        """A gallery file written by `siamese embed`: any size, searched through its index, no re-embedding."""
        if not paths:
            raise GalleryError("Upload a gallery file (.safetensors) written by `siamese embed`.")
        model = self.registry.get(model_name)
        index = GalleryIndex.load(paths[0])
        index.check_model(None, model.embedding_dim)
        return GalleryState(model_name, None, [], index=index)

    def embed_gallery(
        self, model_name: str | None, uploads: LabelledUploads, source: GallerySource | None = None
    ) -> GalleryState:
        """The usable, distinct uploads embedded with the model (from the cache where it embedded them before);
        `source`, what they came from, is kept to build the gallery again for another model."""
        model = self.registry.get(model_name)
        kept = GalleryImages.sort(uploads, model.preprocessing, self.notices, self.picture)
        embeddings = self.embeddings.encode(model_name, model, kept.images)  # (N, D)
        gallery = Gallery(embeddings, kept.uploads.labels, kept.uploads.names)
        warning = single_label_warning(gallery)
        if warning:
            self.notices.warning(warning)
        return GalleryState(model_name, gallery, kept.pictures, source)

    def rank_query(
        self, model_name: str | None, state: GalleryState | None, query: ImageSlot, top_k: int = 5
    ) -> GalleryAnswer:
        """Rank one query image against the session's gallery: top matches, margin, or "no match". A face model
        names every face of the query, each against the gallery."""
        if state is None:
            raise GalleryError("Build a gallery first: upload labelled images or load the example gallery.")
        model = self.registry.get(model_name)
        if state.index is not None:
            if model_name != state.model_name:
                raise GalleryError(
                    f"This saved gallery was loaded for `{state.model_name}` and holds no images to re-embed: pick "
                    f"`{state.model_name}` again, or load a gallery embedded with `{model_name}`."
                )
            # Unlike a built gallery's query: the upload first, whichever input was touched last, no domain check.
            query = ImageSlot(query.drawing, query.uploads, query.side)
        elif state.model_name != model_name:
            state = self._rebuild_gallery(model_name, state)
        threshold, margin = gallery_thresholds(model)

        def rank(embedding: torch.Tensor) -> Ranking:  # (D,)
            if state.index is not None:
                return rank_in_index(state.index, embedding, int(top_k), threshold, margin)
            return state.gallery.rank(embedding, top_k=int(top_k), threshold=threshold, caution_margin=margin)

        prepared = query.prepare_input(model_name, model, every_face=True, check_domain=state.index is None)
        if is_face_model(model):
            faces = name_faces(model, prepared.faces, rank)
            largest, embedding = faces[0].ranking, faces[0].embedding.unsqueeze(0)  # the largest face: (1, D)
        else:
            faces, embedding = [], model.encode(prepared.image.unsqueeze(0))  # (1, D)
            largest = rank(embedding[0])
        cautions = [] if state.index is not None else self.checks.cautions(model_name, model, embedding, ["the query"])
        return GalleryAnswer(state, largest, threshold, cautions, faces, prepared)

    def _rebuild_gallery(self, model_name: str | None, state: GalleryState) -> GalleryState:
        if state.source is None:
            raise GalleryError(
                f"This gallery was embedded with `{state.model_name}` and has no images to re-embed: pick "
                f"`{state.model_name}` again, or build a new gallery."
            )
        if state.source.missing():
            raise GalleryError(
                f"This gallery was embedded with `{state.model_name}`, and the files it was built from are no longer "
                f"on the server (it keeps uploads for a while only), so `{model_name}` cannot embed it: pick "
                f"`{state.model_name}` again, or build the gallery again."
            )
        self.notices.info(f"Re-embedding the gallery with {model_name} (it was built with {state.model_name}).")
        return self.build_gallery(model_name, state.source.paths, state.source.captions)

    # ----- maps -----

    def embedding_map(
        self,
        model_name: str | None,
        points: int,
        perplexity: float,
        user_paths: list[str],
        progress: Callable = no_progress,
    ) -> DrawnMap:
        """A t-SNE map of the model's reference embeddings (cached per model, points, perplexity), with the user's
        images placed on it; without reference images, a map of the user's images alone."""
        model = self.registry.get(model_name)
        if len(user_paths) > MAX_MAP_IMAGES:
            raise MapError(f"Place at most {MAX_MAP_IMAGES} of your images on the map; {len(user_paths)} were given.")
        for path in user_paths:
            check_example_domain(model_name, model, path)
        names = [Path(path).name for path in user_paths]
        images = [
            prepare_usable_image(path, model.preprocessing, name) for path, name in zip(user_paths, names, strict=True)
        ]
        examples = self.references.for_kind(model_kind(model))
        return self.maps.draw((model_name, int(points), float(perplexity)), model, examples, images, names, progress)

    def map_point(
        self, model_name: str | None, points: int, perplexity: float, which: str, index: int, user_paths: list[str]
    ) -> tuple[Image.Image | None, str]:
        """The image behind a map point and its caption (see EmbeddingMaps.point)."""
        model = self.registry.get(model_name)
        examples = None if which == "yours" else self.references.for_kind(model_kind(model))
        return self.maps.point((model_name, int(points), float(perplexity)), examples, which, index, user_paths)
