"""Siamese image similarity: a Gradio app for pairs, one-shot galleries and t-SNE maps.

    python app.py                         # the bundled models in pretrained/, example data built in
    python app.py --model user/repo       # add a Hub model (repeatable; or SIAMESE_MODELS=a/b,c/d)

The handlers live in `SimilarityApp` (plain methods, tested directly); `build_demo` lays them out;
`main` parses the command line and launches. Runs unchanged as a Hugging Face Space.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import hashlib
import html
import io
import json
import os
import platform
import re
import socket
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from siamese.data import examples as example_data
from siamese.distances import similarity_from_distance
from siamese.evaluation.calibration import nearest_reference_distances, out_of_distribution_limit, verdict
from siamese.evaluation.embedding_map import PLACEMENT_METHOD, MapCache, compute_map, map_figure
from siamese.modeling.card import FOLDED_KEYS, THRESHOLD_KEYS, format_value, metric_label
from siamese.search.gallery import Gallery, Ranking, label_from_filename, rank_in_index
from siamese.search.index import GalleryFileError, GalleryIndex

# Gradio rebuilds a pandas table of its last 10,000 queue events to refresh the View API page's timing figures, by
# default twice per event: 4 ms a request after 2,000 events, 13 ms after 10,000 (gradio-app/gradio#11764 made the
# interval this variable). Read when the queue is made (demo.queue()); every 200 events keeps those figures current
# and the cost out of each request.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "200")

HERE = Path(__file__).resolve().parent
BUNDLED_MODELS = {"mnist": HERE / "pretrained" / "mnist", "faces": HERE / "pretrained" / "faces"}
MODELS_ENV = "SIAMESE_MODELS"
MAX_GALLERY_IMAGES = 1000
MAX_MAP_IMAGES = 50
# Large enough for a saved gallery of ~150,000 160-d embeddings; images are also capped by pixel count.
MAX_FILE_SIZE = "100mb"
EMBEDDING_CACHE_SIZE = 20_000  # embeddings kept per server, keyed by (model, image content)
# Per event. The handlers hold the GIL most of the time, so more slots add no throughput, but with 8 the pair and
# gallery queues share the CPU evenly (benchmarks/app_load.py: p95 1.5 s instead of 1.9-2.1 s at 32 clients).
CONCURRENCY_LIMIT = 8
# The AT&T database's terms: free for research use, with credit to the laboratory that made it.
FACES_CREDIT = (
    "*Example faces and the bundled faces model: the AT&T (ORL) Database of Faces, AT&T Laboratories Cambridge "
    "(formerly the Olivetti Research Laboratory), used for research with credit as its terms ask.*"
)
MAP_CONCURRENCY_LIMIT = 2  # t-SNE takes seconds of CPU: no more at once than before
QUEUE_SIZE = 64
MAP_NEIGHBOURS = 5
PREVIEW_IMAGES = 40
PREVIEW_FOLDER = Path(tempfile.gettempdir()) / "siamese_previews"
MAP_METHOD = (
    "Method: scikit-learn's Barnes-Hut t-SNE of the embeddings (PCA start, seed 0, 500 iterations), drawn with "
    "WebGL above 2,000 points."
)
THUMBNAIL_SIZE = 96
# Smaller sides or flatter images carry nothing to compare: a clear error, not a meaningless verdict.
MIN_SIDE = 8
BLANK_CONTRAST = 8
# Reference sample for the out-of-distribution caution (balanced over classes, from the model's examples).
OUT_OF_DISTRIBUTION_REFERENCES = 500
# Formats every browser shows; others (.pgm, .tif, ...) are shown as a PNG copy.
BROWSER_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}
# A file-system path in free text: any run of non-space characters holding a slash.
_PATH_PATTERN = re.compile(r"[^\s`'\",;()]*/[^\s`'\",;()]*")


@dataclass
class ModelSpec:
    """A model the app offers: a display name and a local folder or Hub repo id (optionally `repo@revision`)."""

    name: str
    source: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        source, _, revision = text.strip().partition("@")
        name = Path(source).name if Path(source).is_dir() else source
        return cls(name=name, source=source, revision=revision or None)

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()


@dataclass
class GalleryState:
    """A session's gallery: embeddings with labels (`gallery`) and a small picture of each reference.

    `paths` are the files it was embedded from, so it can be re-embedded when the model changes;
    a saved gallery file from `siamese embed` (`index`, any size) has neither images nor `gallery`
    and stays tied to `model_name`.
    """

    model_name: str
    gallery: Gallery | None
    thumbnails: list[str]  # PNG files written once (see _preview_file): shown in the gallery and the matches
    paths: list[str] | None = None
    index: GalleryIndex | None = None

    @property
    def labels(self) -> list[str]:
        return self.index.labels if self.index is not None else self.gallery.labels

    @property
    def names(self) -> list[str]:
        return self.index.paths if self.index is not None else self.gallery.names


@dataclass
class OutOfDistributionCheck:
    """Embeddings of a model's own example images, and the nearest-reference distance beyond which an input
    looks unlike them (`siamese.evaluation.calibration.out_of_distribution_limit`)."""

    references: torch.Tensor
    limit: float
    description: str


def user_error(message: str) -> gr.Error:
    """A gr.Error for a mistake the user can fix: shown in the page, kept out of the server log."""
    return gr.Error(message, print_exception=False)


def _user_error(error: Exception) -> gr.Error:
    return user_error(str(error))


class ImageUpload(gr.Image):
    """gr.Image for uploads, handing the handler the uploaded file untouched.

    gr.Image would open the file with PIL before the handler runs, so a damaged file or a
    decompression bomb became a traceback; siamese.data.images decodes it instead, with a clear message.
    """

    is_template = True  # the browser side is gr.Image's own

    def preprocess(self, payload):
        return None if payload is None else payload.path


class ModelRegistry:
    """Loads models on first use (local folders at start-up, so a broken one is reported at once)."""

    def __init__(self, specs: list[ModelSpec]):
        self.specs = {spec.name: spec for spec in specs}
        self.models: dict[str, torch.nn.Module] = {}
        self.metrics: dict[str, dict | None] = {}
        self.notes: list[str] = []
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def load_local(self, missing: dict[str, Path] | None = None) -> None:
        """Load every local model now; drop (with a note) those that fail, and note the `missing` ones."""
        for name, folder in (missing or {}).items():
            self.notes.append(f"Model `{name}` is not available: `{folder}` does not exist (not trained yet?).")
        for spec in list(self.specs.values()):
            if spec.is_local:
                try:
                    self.get(spec.name)
                except gr.Error as error:
                    del self.specs[spec.name]
                    self.notes.append(f"Model `{spec.name}` was skipped: {error.message}")

    def get(self, name: str | None) -> torch.nn.Module:
        from siamese.modeling.files import ModelLoadError
        from siamese.modeling.pretrained import load_model, read_metrics

        if not name:
            raise user_error("Pick a model first.")
        if name not in self.specs:
            raise user_error(f"Unknown model {name!r}; the app offers {', '.join(self.specs) or 'none'}.")
        with self._lock:
            if name not in self.models:
                spec = self.specs[name]
                try:
                    model = load_model(spec.source, revision=spec.revision, device="cpu")
                except ModelLoadError as error:
                    raise _user_error(error) from error
                try:
                    self.metrics[name] = read_metrics(spec.source, revision=spec.revision)
                except Exception:  # noqa: BLE001 - metrics are optional decoration
                    self.metrics[name] = None
                self.models[name] = model.eval()
            return self.models[name]


class SimilarityApp:
    """Every handler the page calls. Each takes plain values and returns plain values or raises gr.Error."""

    def __init__(
        self,
        specs: list[ModelSpec],
        mnist_root: str | None = None,
        faces_root: str | None = None,
        download_faces: bool = False,
        missing: dict[str, Path] | None = None,
    ):
        self.registry = ModelRegistry(specs)
        self.registry.load_local(missing)
        self.mnist_root = mnist_root
        self.faces_root = faces_root
        self.download_faces = download_faces
        self.maps = MapCache(capacity=8)
        self.embedding_cache: OrderedDict[tuple[str, bytes], torch.Tensor] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.last_embedded = 0
        self.map_sources: dict[tuple, torch.Tensor] = {}  # map key -> example indices (N,) of its points
        self.checks: dict[str, OutOfDistributionCheck | None] = {}
        self._checks_lock = threading.Lock()

    # ----- shared helpers -----

    def threshold(self, model) -> float | None:
        """The pair threshold, chosen on validation data (None for an uncalibrated model)."""
        value = model.calibration.get("threshold") if model.calibration else None
        return float(value) if value else None

    def gallery_thresholds(self, model) -> tuple[float | None, float | None]:
        """The gallery's "no match" distance and caution margin, both chosen on validation galleries."""
        calibration = model.calibration or {}
        threshold = calibration.get("gallery_threshold", calibration.get("threshold"))
        return (float(threshold) if threshold else None), calibration.get("caution_margin")

    @staticmethod
    def kind(model) -> str:
        """The model's domain as its preprocessing declares it: "digits", "faces" or "folder"."""
        return str((model.preprocessing or {}).get("kind", "folder"))

    def model_kind(self, model_name: str | None) -> str:
        return self.kind(self.registry.get(model_name))

    def prepare(self, model, source, name: str) -> torch.Tensor:
        """One image (path, PIL or array) -> uint8 (C, H, W) in the model's form, or a gr.Error saying why not."""
        from siamese.data.images import ImageError

        try:
            return image_to_model(source, model.preprocessing, name)
        except ImageError as error:
            raise _user_error(error) from error

    def embed(self, model, images: torch.Tensor) -> torch.Tensor:
        return model.encode(images)  # (N, D)

    def reference_set(self, kind: str, download: bool | None = None):
        """Example images for a model kind: digits always, faces where they can be had, else None."""
        if kind == "digits":
            return example_data.load_digits(self.mnist_root)
        if kind == "faces":
            faces = example_data.load_faces(self.faces_root, self.download_faces if download is None else download)
            return None if faces is None else example_data.restrict_classes(faces, self.unseen_face_classes())
        return None

    def unseen_face_classes(self) -> list[str] | None:
        """The people every loaded face model held out as test subjects: examples show only them."""
        held_out = None
        for model in self.registry.models.values():
            if model.preprocessing.get("kind") != "faces":
                continue
            dataset = model.training_info.get("dataset") or {}
            test_classes = set(dataset.get("test_classes") or [])
            held_out = test_classes if held_out is None else held_out & test_classes
        return sorted(held_out) if held_out else None

    def check_example_domain(self, model_name: str, model, path: str) -> None:
        """A gr.Error when `path` is a built-in example of another domain than the model's."""
        example_kind = example_data.example_kind(path)
        if example_kind is not None and example_kind != self.kind(model):
            raise user_error(
                f"This example is from the {example_kind} examples, but model `{model_name}` was trained on "
                f"{self.kind(model)}: pick a {example_kind} model, or an example for {self.kind(model)}."
            )

    def out_of_distribution_check(self, model_name: str, model) -> OutOfDistributionCheck | None:
        """The model's reference sample and limit (computed once per model); None without example images."""
        with self._checks_lock:
            if model_name in self.checks:
                return self.checks[model_name]
        examples = self.reference_set(self.kind(model))
        check = None
        if examples is not None and len(examples) >= 2:
            chosen = example_data.balanced_indices(examples.labels, OUT_OF_DISTRIBUTION_REFERENCES)
            references = self.embed(model, example_data.fit_to_model(examples.images[chosen], model.preprocessing))
            check = OutOfDistributionCheck(
                references, out_of_distribution_limit(references), f"{len(chosen)} example {examples.kind}"
            )
        with self._checks_lock:
            self.checks[model_name] = check
        return check

    def out_of_distribution_cautions(self, model_name, model, embeddings: torch.Tensor, sides: list[str]) -> list[str]:
        """A caution for each input embedding (M, D) that lies beyond the model's out-of-distribution limit."""
        check = self.out_of_distribution_check(model_name, model)
        if check is None:
            return []
        nearest = nearest_reference_distances(embeddings, check.references)  # (M,)
        return [
            f"**Caution:** {side} looks unlike the images this model was made for. Its nearest of "
            f"{check.description} lies at distance {distance:.3g}, beyond {check.limit:.3g}: the distance within "
            f"which 99% of those examples find their nearest neighbour among the others (each left out in turn). "
            "Treat the answer with suspicion."
            for side, distance in zip(sides, nearest.tolist(), strict=True)
            if distance > check.limit
        ]

    # ----- model picker -----

    def model_info(self, model_name: str | None) -> str:
        """Markdown for the "About this model" panel: data, test metrics, threshold; no machine paths."""
        model = self.registry.get(model_name)
        metrics = self.registry.metrics.get(model_name) or {}
        spec = self.registry.specs[model_name]
        dataset = metrics.get("dataset") or model.training_info.get("dataset") or {}
        origin = "bundled with the app" if spec.is_local else f"from the Hugging Face Hub: `{spec.source}`"
        lines = [f"**{model_name}**, {origin}" + (f" @ `{spec.revision}`" if spec.revision else "")]
        lines.append(
            f"- Network: {model.architecture}, {model.embedding_dim}-d embeddings"
            + (f" (whole image + {model.parts} stripes)" if model.parts else "")
            + f", input {model.in_channels}x{model.image_size[0]}x{model.image_size[1]} ({self.kind(model)})"
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
        threshold = self.threshold(model)
        if threshold is not None:
            lines.append(
                f"- Verdict threshold: distance ≤ {threshold:.4g} means *same* (the validation equal-error point), "
                f"chosen on {model.calibration.get('measured_on', 'held-out pairs')}"
            )
            expected = (model.calibration.get("test") or {}).get("at_threshold")
            if expected:
                lines.append(
                    f"- At that threshold on unseen test pairs: {expected['false_accept_rate']:.1%} false accepts, "
                    f"{expected['false_reject_rate']:.1%} false rejects"
                )
        else:
            lines.append("- No calibrated threshold: the app shows distances but gives no same/different verdict.")
        command = (metrics.get("training") or {}).get("command") or model.training_info.get("command")
        if command:
            lines.append(f"- Trained with: `{without_paths(command)}`")
        return "\n".join(lines)

    # ----- uploads and example domains -----

    def show_upload(self, path: str | None, side: str):
        """An uploaded file as the browser can show it (PNG unless already PNG, JPEG, GIF or WebP), the choice
        of input it makes ("upload") and the line that says so."""
        if not path:
            return None, "drawing", f"Using: {side} drawing (no file uploaded)."
        from siamese.data.images import ImageError

        try:
            usable_image(path, Path(path).name)  # a bad file is reported on upload, not only on Compare
            shown = browser_image(path)
        except ImageError as error:
            raise _user_error(error) from error
        return shown, "upload", f"Using: uploaded file **{html.escape(Path(path).name)}**."

    @staticmethod
    def choose_drawing(side: str):
        """The choice and the line after the user draws: the drawing now wins over an upload."""
        return "drawing", f"Using: {side} drawing."

    def example_visibility(self, model_name: str | None) -> tuple[bool, bool]:
        """Whether digit and face examples fit the chosen model."""
        kind = self.model_kind(model_name) if model_name else None
        return kind == "digits", kind == "faces"

    # ----- tab 1: pair similarity -----

    def compare_pair(self, model_name, drawing_a, upload_a, drawing_b, upload_b, choice_a=None, choice_b=None):
        """Distance, similarity and verdict for two images (each drawn or uploaded; the last one touched wins)."""
        model = self.registry.get(model_name)
        images = []
        for drawing, upload, side, choice in (
            (drawing_a, upload_a, "A", choice_a),
            (drawing_b, upload_b, "B", choice_b),
        ):
            source, name = _pick_source(drawing, upload, side, choice)
            if isinstance(source, str):
                self.check_example_domain(model_name, model, source)
            images.append(self.prepare(model, source, name))
        embeddings = self.embed(model, torch.stack(images))  # (2, D)
        distance = float((embeddings[0] - embeddings[1]).norm())
        result = verdict(distance, model.calibration)
        threshold = result["threshold"]
        if threshold is not None:
            result["similarity"] = float(similarity_from_distance(distance, threshold))
        cautions = self.out_of_distribution_cautions(model_name, model, embeddings, ["image A", "image B"])
        result["out_of_distribution"] = bool(cautions)
        text = verdict_markdown(result, model.calibration) + "".join(f"\n\n{caution}" for caution in cautions)
        figure = distance_plot(model.calibration, distance)
        return text, result, figure, _side_by_side(images)

    # ----- tab 2: one-shot gallery -----

    def build_gallery(self, model_name, files, captions: str = ""):
        """Embed uploaded files as a gallery. Labels: the captions (one per image), else the class folder
        (a folder or .zip of class sub-folders), else the file name."""
        from siamese.data.uploads import UploadError, expand_uploads

        paths = _file_paths(files)
        if not paths:
            raise user_error(
                "The gallery is empty: upload images (labels from names like alice_1.png), or a .zip or folder "
                "with one sub-folder per label."
            )
        try:
            uploads = expand_uploads(paths, max_files=MAX_GALLERY_IMAGES)
        except UploadError as error:
            raise _user_error(error) from error
        if not uploads:
            raise user_error("The upload holds no image files (.png, .jpg, .pgm, ...), so the gallery is empty.")
        if len(uploads) > MAX_GALLERY_IMAGES:
            raise user_error(f"A gallery holds at most {MAX_GALLERY_IMAGES} images; {len(uploads)} were uploaded.")
        names = [upload.name for upload in uploads]
        labels = _caption_labels(captions, len(uploads)) or [
            upload.label or label_from_filename(Path(upload.name).name) for upload in uploads
        ]
        state = self._embed_gallery(model_name, [upload.path for upload in uploads], labels, names)
        return self._gallery_outputs(state)

    def load_example_gallery(self, model_name, example_kind: str = "digits", per_label: int = 1):
        """A gallery of `per_label` example images per class, from the built-in examples of the model's domain."""
        model = self.registry.get(model_name)
        if example_kind != self.kind(model):
            raise user_error(
                f"Model `{model_name}` was trained on {self.kind(model)}, so the {example_kind} example gallery "
                f"would mean nothing to it: pick a {example_kind} model, or the {self.kind(model)} examples."
            )
        examples = self.reference_set(example_kind, download=True)
        if examples is None:
            raise user_error(
                f"No example {example_kind} on this machine (scikit-learn's Olivetti faces are not cached and could "
                "not be downloaded). Upload your own images instead."
            )
        per_label = int(min(max(int(per_label), 1), MAX_GALLERY_IMAGES // len(examples.class_names)))
        paths = example_data.gallery_examples(examples, per_label=per_label, labels=len(examples.class_names))
        names = [Path(path).name for path in paths]
        labels = [label_from_filename(name) for name in names]
        return self._gallery_outputs(self._embed_gallery(model_name, paths, labels, names))

    def load_saved_gallery(self, model_name, file):
        """A gallery file written by `siamese embed`: any size, searched through its index, no re-embedding."""
        paths = _file_paths(file)
        if not paths:
            raise gr.Error("Upload a gallery file (.safetensors) written by `siamese embed`.", print_exception=False)
        model = self.registry.get(model_name)
        try:
            index = GalleryIndex.load(paths[0])
            index.check_model(None, model.embedding_dim)
        except GalleryFileError as error:
            raise _user_error(error) from error
        counts = len(set(index.labels))
        made_with = f" (embedded with `{index.model_id}`)" if index.model_id else ""
        summary = (
            f"Saved gallery: **{len(index):,}** embeddings, **{counts:,}** labels{made_with}, searched with "
            f"{'an exact search' if index.backend == 'exact' else 'a FAISS index'}. Queries are embedded with "
            f"`{model_name}`: use the model that made the gallery."
        )
        state = GalleryState(model_name, None, [], None, index=index)
        return state, summary, []

    def _embed_gallery(self, model_name, paths, labels, names) -> GalleryState:
        from siamese.data.images import ImageError, image_to_tensor

        model = self.registry.get(model_name)
        images, thumbnails, kept_paths, kept_labels, kept_names, skipped = [], [], [], [], [], []
        seen: dict[bytes, int] = {}
        duplicates, conflicts = 0, []
        for path, label, name in zip(paths, labels, names, strict=True):
            try:
                decoded = usable_image(path, name)
                image = image_to_tensor(decoded, model.preprocessing)  # (C, H, W)
            except ImageError as error:
                skipped.append(str(error))
                continue
            digest = hashlib.sha1(image.numpy().tobytes()).digest()
            if digest in seen:
                first = seen[digest]
                if kept_labels[first] == label:
                    duplicates += 1
                    continue
                conflicts.append(f"{kept_names[first]} ({kept_labels[first]}) and {name} ({label})")
            seen.setdefault(digest, len(kept_paths))
            images.append(image)
            # A file written once, not an array: Gradio rewrites an array output's file in place, which
            # truncates it under a concurrent download of the same thumbnail (gradio-app/gradio#8878).
            thumbnails.append(_preview_file(thumbnail(decoded)))
            kept_paths.append(path)
            kept_labels.append(label)
            kept_names.append(name)
        if skipped:
            listed = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
            gr.Warning(f"Skipped {len(skipped)} file(s) that are not usable images: {listed}")
        if not images:
            raise user_error("None of the uploaded files is a usable image, so the gallery is empty.")
        if duplicates:
            gr.Warning(f"Dropped {duplicates} duplicate image(s) that repeat an image with the same label.")
        if conflicts:
            gr.Warning(f"The same image carries different labels: {'; '.join(conflicts[:3])}. Both are kept.")
        gallery = Gallery(self._embed_cached(model_name, model, images), kept_labels, kept_names)
        if len(gallery.label_names) == 1:
            gr.Warning(
                f"The gallery has a single label ({gallery.label_names[0]!r}): every query gets that label unless it "
                "lies beyond the threshold, and there is no margin to a second label."
            )
        return GalleryState(model_name, gallery, thumbnails, kept_paths)

    def _embed_cached(self, model_name: str, model, images: list[torch.Tensor]) -> torch.Tensor:
        """Embeddings (N, D) of prepared images; those this model already embedded come from the cache,
        so switching models back and forth re-embeds only what it must."""
        keys = [(model_name, hashlib.sha1(image.numpy().tobytes()).digest()) for image in images]
        with self._cache_lock:
            missing = [position for position, key in enumerate(keys) if key not in self.embedding_cache]
        if missing:
            fresh = self.embed(model, torch.stack([images[position] for position in missing]))  # (M, D)
            with self._cache_lock:
                for position, embedding in zip(missing, fresh, strict=True):
                    self.embedding_cache[keys[position]] = embedding
                    self.embedding_cache.move_to_end(keys[position])
                while len(self.embedding_cache) > EMBEDDING_CACHE_SIZE:
                    self.embedding_cache.popitem(last=False)
        with self._cache_lock:
            self.last_embedded = len(missing)
            return torch.stack([self.embedding_cache[key] for key in keys])  # (N, D)

    def _gallery_outputs(self, state: GalleryState):
        gallery = state.gallery
        counts = gallery.label_counts()
        summary = (
            f"Gallery: **{len(gallery)}** images, **{len(counts)}** labels, embedded once with `{state.model_name}`. "
            + ", ".join(f"{html.escape(label)} ×{count}" for label, count in sorted(counts.items())[:20])
            + (" …" if len(counts) > 20 else "")
        )
        preview = list(zip(state.thumbnails, state.labels, strict=True))[:PREVIEW_IMAGES]
        return state, summary, preview

    def rank_query(self, model_name, state: GalleryState | None, drawing, upload, top_k: int = 5, choice=None):
        """Rank one query image against the session's gallery: top matches, margin, or "no match"."""
        if state is None:
            raise user_error("Build a gallery first: upload labelled images or load the example gallery.")
        model = self.registry.get(model_name)
        if state.index is not None:
            return self._rank_in_saved_gallery(model_name, model, state, drawing, upload, top_k)
        if state.model_name != model_name:
            if state.paths is None:
                raise user_error(
                    f"This gallery was embedded with `{state.model_name}` and has no images to re-embed: pick "
                    f"`{state.model_name}` again, or build a new gallery."
                )
            gr.Info(f"Re-embedding the gallery with {model_name} (it was built with {state.model_name}).")
            state = self._embed_gallery(model_name, state.paths, state.labels, state.names)
        source, name = _pick_source(drawing, upload, "query", choice)
        if isinstance(source, str):
            self.check_example_domain(model_name, model, source)
        query = self.embed(model, self.prepare(model, source, name).unsqueeze(0))  # (1, D)
        threshold, margin = self.gallery_thresholds(model)
        ranking = state.gallery.rank(query[0], top_k=int(top_k), threshold=threshold, caution_margin=margin)
        rows = ranking_rows(ranking, threshold)
        matches = [
            (state.thumbnails[match.index], f"{match.label} · d={match.distance:.3g}") for match in ranking.matches
        ]
        cautions = self.out_of_distribution_cautions(model_name, model, query, ["the query"])
        text = ranking_markdown(ranking) + "".join(f"\n\n{caution}" for caution in cautions)
        return state, text, rows, matches

    def _rank_in_saved_gallery(self, model_name, model, state: GalleryState, drawing, upload, top_k):
        if model_name != state.model_name:
            raise gr.Error(
                f"This saved gallery was loaded for `{state.model_name}` and holds no images to re-embed: pick "
                f"`{state.model_name}` again, or load a gallery embedded with `{model_name}`.",
                print_exception=False,
            )
        source, name = _pick_source(drawing, upload, "query")
        query = self.embed(model, self.prepare(model, source, name).unsqueeze(0))  # (1, D)
        threshold, margin = self.gallery_thresholds(model)
        ranking = rank_in_index(state.index, query[0], top_k=int(top_k), threshold=threshold, caution_margin=margin)
        rows = ranking_rows(ranking, threshold)  # match names are the gallery file's relative paths
        return state, ranking_markdown(ranking), rows, []

    # ----- tab 3: t-SNE map -----

    def embedding_map(self, model_name, points: int = 1000, perplexity: float = 30, files=None, progress=None):
        """A t-SNE map of reference embeddings (cached per model, points, perplexity), with the user's images on it."""
        progress = progress or (lambda *args, **kwargs: None)
        model = self.registry.get(model_name)
        user_paths = _file_paths(files)
        if len(user_paths) > MAX_MAP_IMAGES:
            raise user_error(f"Place at most {MAX_MAP_IMAGES} of your images on the map; {len(user_paths)} were given.")
        for path in user_paths:
            self.check_example_domain(model_name, model, path)
        user_names = [Path(path).name for path in user_paths]
        user_images = [self.prepare(model, path, name) for path, name in zip(user_paths, user_names, strict=True)]
        kind = self.kind(model)
        examples = self.reference_set(kind)
        points, perplexity = int(points), float(perplexity)
        if examples is not None:
            key = (model_name, examples.source, points, perplexity)
            cached = key in self.maps

            def compute():
                progress(0.1, desc=f"Embedding {points} reference images")
                chosen = example_data.balanced_indices(examples.labels, points)
                images = example_data.fit_to_model(examples.images[chosen], model.preprocessing)
                embeddings = self.embed(model, images)  # (points, D)
                progress(0.3, desc=f"Running t-SNE on {len(chosen)} points (perplexity {perplexity:g})")
                self.map_sources[key] = chosen
                return compute_map(embeddings, examples.labels[chosen].numpy(), examples.class_names, perplexity)

            embedding_map = self.maps.get(key, compute)
            note = f"{MAP_METHOD} Reference set: {len(embedding_map)} images from {without_paths(examples.source)}" + (
                " (map from the cache)." if cached else "."
            )
        else:
            if len(user_images) < 5:
                raise user_error(
                    f"No reference images for {kind!r} models on this machine (the Olivetti faces could not be "
                    "loaded), so the map is made of your own images alone: upload at least 5."
                )
            progress(0.3, desc=f"Running t-SNE on your {len(user_images)} images")
            labels = [label_from_filename(name) for name in user_names]
            class_names = sorted(set(labels))
            label_ids = np.array([class_names.index(label) for label in labels])
            embedding_map = compute_map(self.embed(model, torch.stack(user_images)), label_ids, class_names, perplexity)
            note = "No reference set for this model here: the map shows only your own images, coloured by file name."
            user_images = []
        placed, nearest = None, None
        if user_images:
            progress(0.9, desc="Placing your images")
            user_embeddings = self.embed(model, torch.stack(user_images))  # (M, D)
            placed = embedding_map.place(user_embeddings, neighbours=MAP_NEIGHBOURS)  # (M, 2)
            nearest = _nearest_classes(embedding_map, user_embeddings)
            note += " " + PLACEMENT_METHOD.format(neighbours=MAP_NEIGHBOURS)
        note += " Click a point to see its image."
        figure = map_figure(embedding_map, placed, user_names if user_images else None, nearest)
        progress(1.0, desc="Done")
        return figure, note

    def map_point(self, model_name, points, perplexity, selection: str | None, files=None):
        """The image behind a clicked map point: `selection` is "reference:<index>" or "yours:<position>"."""
        if not selection or ":" not in selection:
            return None, ""
        kind, _, number = selection.partition(":")
        if not number.isdigit():
            return None, ""
        index = int(number)
        model = self.registry.get(model_name)
        if kind == "yours":
            paths = _file_paths(files)
            if index >= len(paths):
                return None, ""
            return thumbnail(usable_image(paths[index], Path(paths[index]).name), 160), Path(paths[index]).name
        examples = self.reference_set(self.kind(model))
        chosen = (
            None
            if examples is None
            else self.map_sources.get((model_name, examples.source, int(points), float(perplexity)))
        )
        if chosen is None or index >= len(chosen):
            return None, "Draw the map again to see its images."
        example_index = int(chosen[index])
        image = examples.images[example_index, 0].numpy()  # (H, W)
        label = examples.class_names[int(examples.labels[example_index])]
        return thumbnail(image_from_array(image), 160), f"class {label}, example #{example_index}"


# ----- pure helpers -----


def _file_paths(files) -> list[str]:
    """gr.File values (None, a path, a list of paths or of objects with .name) -> a list of paths."""
    if files is None:
        return []
    if isinstance(files, str | Path):
        return [str(files)]
    return [str(getattr(item, "name", item)) for item in files if item]


def _caption_labels(captions: str | None, count: int) -> list[str] | None:
    """Labels typed one per line or comma separated; None when empty; a gr.Error when the count is off."""
    if not captions or not captions.strip():
        return None
    separator = "\n" if "\n" in captions.strip() else ","
    labels = [label.strip() for label in captions.strip().split(separator)]
    empty = [str(position + 1) for position, label in enumerate(labels) if not label]
    if empty:
        which = f"label {empty[0]} is" if len(empty) == 1 else f"labels {', '.join(empty)} are"
        raise user_error(f"Give one non-empty label per image: {which} empty in {captions.strip()!r}.")
    if len(labels) != count:
        raise user_error(f"Give one non-empty label per image: got {len(labels)} label(s) for {count} image(s).")
    return labels


def usable_image(source, name: str):
    """Decode an image and refuse the ones nothing can be learned from: too small, too thin, or one flat colour."""
    from siamese.data.images import ImageError, open_image

    image = open_image(source, name=name)
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"{name} is {width}x{height} pixels: too small or too thin to compare (at least {MIN_SIDE} pixels "
            "a side are needed)"
        )
    low, high = image.convert("L").getextrema()
    if high - low < BLANK_CONTRAST:
        raise ImageError(f"{name} is blank (a single flat shade, {low}..{high}): there is nothing to compare")
    return image


def image_to_model(source, preprocessing: dict, name: str) -> torch.Tensor:
    """A usable image in the model's input form, uint8 (C, H, W); an ImageError says why not."""
    from siamese.data.images import image_to_tensor

    return image_to_tensor(usable_image(source, name), preprocessing)


def image_from_array(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)


def thumbnail(image, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """A small copy of a decoded image as a uint8 array, (h, w) or (h, w, 3); gradio sends it to the page as PNG."""
    small = image.copy()
    small.thumbnail((size, size))
    return np.asarray(small)


def browser_image(path: str) -> str:
    """`path` itself when browsers show its format, else a PNG copy of it (in the temp folder, named after it)."""
    import tempfile

    from siamese.data.images import open_image

    if Path(path).suffix.lower() in BROWSER_SUFFIXES:
        return path
    image = open_image(path, name=Path(path).name)
    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / "siamese-previews" / digest / f"{Path(path).stem}.png"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial.png")
        image.save(partial, format="PNG")
        os.replace(partial, target)
    return str(target)


def without_paths(text: str) -> str:
    """`text` with every path (any word holding a slash) replaced by its last part, so no machine path shows."""
    return _PATH_PATTERN.sub(lambda match: Path(match.group(0)).name or "…", text)


def _sketch_image(drawing):
    """A Sketchpad value -> an RGB PIL image of black ink on white, or None when nothing was drawn."""
    from PIL import Image

    if drawing is None:
        return None
    composite = drawing.get("composite") if isinstance(drawing, dict) else drawing
    if composite is None:
        return None
    if isinstance(composite, str):  # a file path, as gradio_client sends it
        composite = Image.open(composite)
    array = np.asarray(composite)
    if array.ndim == 2:
        array = np.stack([array] * 3 + [np.full_like(array, 255)], axis=-1)
    if array.shape[-1] == 3:
        array = np.concatenate([array, np.full_like(array[..., :1], 255)], axis=-1)
    alpha = array[..., 3:4].astype(np.float32) / 255.0  # (H, W, 1)
    # A transparent canvas with strokes: flatten onto white so ink shows as dark on light.
    flat = (array[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    if flat.max() - flat.min() < 16:
        return None
    return Image.fromarray(flat, mode="RGB")


def _pick_source(drawing, upload, side: str, choice: str | None = None):
    """The image one input slot holds: the input the user touched last (`choice`, "drawing" or "upload"), and a
    gr.Error when that input is empty (never a silent switch to the other one, which may hold an old example).
    With no choice yet, whichever holds an image (the upload first)."""
    paths = _file_paths(upload)
    sketch = _sketch_image(drawing)
    if choice == "drawing":
        if sketch is None:
            raise user_error(
                f"Image {side}: the drawing is in use (you touched it last), but the canvas is empty. Draw on it, "
                f"or upload a file to use that instead."
            )
        return sketch, f"drawing {side}"
    if choice == "upload":
        if not paths:
            raise user_error(f"Image {side}: the upload is in use, but no file is uploaded. Upload one, or draw.")
        return paths[0], Path(paths[0]).name
    if paths:
        return paths[0], Path(paths[0]).name
    if sketch is not None:
        return sketch, f"drawing {side}"
    raise user_error(f"Image {side} is empty: draw on the canvas or upload an image file.")


def _side_by_side(images: list[torch.Tensor], height: int = 112) -> np.ndarray:
    """What the model sees: uint8 (C, H, W) images scaled up (nearest) and placed side by side, (H', W', 3)."""
    tiles = []
    for image in images:
        scale = max(1, height // image.shape[1])
        tile = image.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)  # (C, H*s, W*s)
        tile = tile.expand(3, -1, -1) if tile.shape[0] == 1 else tile
        tiles.append(tile.permute(1, 2, 0).numpy())
    rows = max(tile.shape[0] for tile in tiles)
    padded = [np.pad(tile, ((0, rows - tile.shape[0]), (0, 8), (0, 0)), constant_values=128) for tile in tiles]
    return np.concatenate(padded, axis=1)


def _preview_file(image: np.ndarray) -> str:
    """A (H, W, 3) or (H, W) image as a PNG named by its content, written once under a temporary name, then renamed.

    Gradio saves an array output by rewriting, in place, a file named by the image's hash, so two requests with
    the same preview truncate that file while a client may be downloading it (h11 "Too little data for declared
    Content-Length"). A path output is copied into Gradio's cache atomically instead, and this file never changes.
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    data = buffer.getvalue()
    path = PREVIEW_FOLDER / f"{hashlib.sha256(data).hexdigest()}.png"
    if not path.exists():
        PREVIEW_FOLDER.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=PREVIEW_FOLDER, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(staging, path)
    return str(path)


def _nearest_classes(embedding_map, embeddings: torch.Tensor) -> list[str]:
    from siamese.distances import squared_pairwise_distances

    nearest = squared_pairwise_distances(embeddings, embedding_map.embeddings).argmin(dim=1)  # (M,)
    return [str(embedding_map.class_names[embedding_map.labels[index]]) for index in nearest.tolist()]


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


def distance_figure(calibration: dict | None, distance: float):
    """Genuine and impostor distance densities from the calibration, with this pair's distance marked."""
    figure = _distance_bars(calibration)
    shapes, annotations = _distance_marks(calibration, distance)
    return figure.update_layout(shapes=shapes, annotations=annotations)


def distance_plot(calibration: dict | None, distance: float):
    """distance_figure as gr.Plot's JSON, the bars taken from a cache: plotly spends about 4 ms building and
    validating the figure, a tenth of a pair request's server time under load."""
    from gradio.components.plot import PlotData

    histogram = (calibration or {}).get("distance_histogram") or {}
    figure = json.loads(_distance_bars_json(json.dumps(histogram, sort_keys=True)))
    shapes, annotations = _distance_marks(calibration, distance)
    figure["layout"].update(shapes=shapes, annotations=annotations)
    return PlotData(type="plotly", plot=json.dumps(figure))


@functools.lru_cache(maxsize=32)
def _distance_bars_json(histogram_json: str) -> str:
    return _distance_bars({"distance_histogram": json.loads(histogram_json)}).to_json()


def _distance_bars(calibration: dict | None):
    """The figure of distance_figure without the marks: one bar trace per class relation."""
    import plotly.graph_objects as go

    bars = []
    histogram = (calibration or {}).get("distance_histogram") or {}
    edges = np.asarray(histogram.get("edges") or [], dtype=float)
    if len(edges) >= 2:
        centres = (edges[:-1] + edges[1:]) / 2
        widths = np.diff(edges)
        for key, name, colour in (("genuine", "same class", "#2a9d8f"), ("impostor", "different class", "#e76f51")):
            values = histogram.get(key)
            if values is not None and len(values) == len(centres):
                bars.append(go.Bar(x=centres, y=values, width=widths, name=name, marker_color=colour, opacity=0.55))
    return go.Figure(
        data=bars,
        layout={
            "barmode": "overlay",
            "xaxis": {"title": {"text": "distance between embeddings"}},
            "yaxis": {"title": {"text": "density (held-out pairs)"}},
            "height": 320,
            "margin": {"l": 40, "r": 10, "t": 56, "b": 40},  # room for the plot label above the line labels
            "legend": {"orientation": "h", "y": -0.25},
        },
    )


def _distance_marks(calibration: dict | None, distance: float) -> tuple[list[dict], list[dict]]:
    """Layout shapes and annotations marking this pair's distance and the threshold (plain dicts: Figure.add_vline
    costs ~10 ms a call)."""
    threshold = (calibration or {}).get("threshold")
    pair_side = "left" if not threshold or threshold <= distance else "right"
    marks = [(distance, "this pair", "black", "solid", 3, pair_side)]
    if threshold:
        # The two labels lean away from each other, so they do not overlap when the lines are close.
        marks.append((threshold, "threshold", "grey", "dash", 2, "right" if pair_side == "left" else "left"))
    shapes = [
        {
            "type": "line",
            "x0": x,
            "x1": x,
            "y0": 0,
            "y1": 1,
            "yref": "paper",
            "line": {"color": c, "dash": d, "width": w},
        }
        for x, _, c, d, w, _ in marks
    ]
    annotations = [
        {"x": x, "y": 1, "yref": "paper", "text": f" {text} ", "showarrow": False, "xanchor": side, "yanchor": "bottom"}
        for x, text, *_, side in marks
    ]
    return shapes, annotations


# ----- layout -----

# Runs once in the page, checking twice a second:
# - each drawing pad that is on screen gets its brush picked once, so drawing works without choosing the brush
#   first (gr.Sketchpad starts with no tool and has no option for a starting tool);
# - a click on a map point writes "reference:<index>" or "yours:<position>" into the hidden #map_selection box,
#   whose change event fetches the point's image (gr.Plot has no click or select event of its own).
PAGE_JS = """
() => {
  const pickBrushes = () => {
    for (const pad of document.querySelectorAll('.sketchpad-input')) {
      const brush = pad.querySelector("button[aria-label='Brush']");
      if (!brush || pad.dataset.brushPicked || pad.offsetParent === null) continue;
      brush.click();
      pad.dataset.brushPicked = 'yes';
    }
  };
  const listenToMapClicks = () => {
    const plot = document.querySelector('#map_plot .js-plotly-plot');
    if (!plot || !plot.on || !plot._ev || plot._ev.listeners('plotly_click').length > 0) return;
    plot.on('plotly_click', (event) => {
      const point = event.points[0];
      const yours = point.data.name === 'your images';
      const value = yours ? `yours:${point.pointIndex}` : `reference:${point.customdata[1]}`;
      const box = document.querySelector('#map_selection textarea, #map_selection input');
      if (!box) return;
      box.value = value;
      box.dispatchEvent(new Event('input', {bubbles: true}));
    });
  };
  setInterval(() => { pickBrushes(); listenToMapClicks(); }, 500);
}
"""


@dataclass
class ImageInput:
    """One image slot on the page: a drawing pad and an upload box in tabs, which of the two is in use, and a line
    that says so."""

    tabs: gr.Tabs
    drawing: gr.Sketchpad
    upload: ImageUpload
    choice: gr.Textbox
    using: gr.Markdown


def _image_input(app: SimilarityApp, prefix: str, label: str, side: str) -> ImageInput:
    """A drawing pad and an upload box for one image; the one the user touched last is used."""
    # Which input is in use lives in the page (a hidden textbox), so drawing switches it at once in the browser
    # with no round trip: a Compare pressed right after a stroke already sees "drawing".
    choice = gr.Textbox(value="", visible=False, elem_id=f"{prefix}_choice")
    with gr.Tabs(elem_id=f"{prefix}_tabs") as tabs:
        with gr.Tab("Draw", id="draw"):
            drawing = gr.Sketchpad(
                label=f"{label}: draw",
                type="numpy",
                canvas_size=(280, 280),
                fixed_canvas=True,
                brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"),
                layers=False,
                elem_id=f"{prefix}_sketch",
                elem_classes=["sketchpad-input"],
            )
        with gr.Tab("Upload", id="upload"):
            upload = ImageUpload(
                label=f"{label}: upload",
                type="filepath",
                sources=["upload", "clipboard"],
                height=280,
                elem_id=f"{prefix}_upload",
            )
    using = gr.Markdown("Using: nothing yet (draw or upload an image).", elem_id=f"{prefix}_using")
    quiet = {"show_progress": "hidden", "api_visibility": "private"}
    drawing_choice, drawing_line = app.choose_drawing(side)
    drawing.input(None, None, [choice, using], js=f"() => {json.dumps([drawing_choice, drawing_line])}", **quiet)
    upload.upload(lambda path: app.show_upload(path, side), upload, [upload, choice, using], **quiet)
    upload.clear(lambda: app.show_upload(None, side), None, [upload, choice, using], **quiet)
    return ImageInput(tabs, drawing, upload, choice, using)


# After an example click, each filled slot uses its upload: set in the page the moment the example's images land, as
# a drawing sets it, so a stroke made after that wins (a queued round trip could land after the stroke and undo it).
USE_EXAMPLES_JS = """(...files) => files.flatMap((file) => {
    const name = file ? (file.orig_name || String(file.path).split("/").pop()) : "nothing";
    const shown = name.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
    return ["upload", `Using: example **${shown}**.`];
})"""


def _show_upload_tabs(*paths):
    """After an example click: the Upload tab of each filled slot is shown."""
    return [gr.Tabs(selected="upload") for _ in paths]


def _pair_examples(examples, inputs, label: str):
    pairs = example_data.pair_examples(examples)
    # File names end in the class: pair0_a_7.png.
    names = [[Path(path).stem.rsplit("_", 1)[-1] for path in pair] for pair in pairs]
    return gr.Examples(
        pairs,
        inputs,
        label=label,
        example_labels=[f"{first} vs {second}" for first, second in names],
        examples_per_page=len(pairs),
    )


def _file_examples(paths, component, label: str):
    return gr.Examples(
        [[path] for path in paths],
        [component],
        label=label,
        example_labels=[Path(path).stem.rsplit("_", 1)[-1] for path in paths],
        examples_per_page=len(paths),
    )


def build_demo(
    specs: list[ModelSpec] | None = None,
    mnist_root: str | None = None,
    faces_root: str | None = None,
    download_faces: bool = False,
    app: SimilarityApp | None = None,
) -> gr.Blocks:
    """The page: model picker and notes, three tabs, examples. `specs` defaults to the bundled models."""
    if app is None:
        missing = {}
        if specs is None:
            specs = [ModelSpec(name, str(folder)) for name, folder in BUNDLED_MODELS.items() if folder.is_dir()]
            missing = {name: folder for name, folder in BUNDLED_MODELS.items() if not folder.is_dir()}
        app = SimilarityApp(specs, mnist_root, faces_root, download_faces, missing)
    digits = example_data.load_digits(mnist_root)
    faces = example_data.load_faces(faces_root, download_faces)
    if faces is not None:
        faces = example_data.restrict_classes(faces, app.unseen_face_classes())
    names = app.registry.names
    show_digits, show_faces = app.example_visibility(names[0] if names else None)

    # Previews and thumbnails are written once under content names (see _preview_file): served from where they lie,
    # they skip Gradio's hash-and-copy into its cache on every request. set_static_paths appends, and Gradio checks
    # every output file against each entry, so the folder is registered once however many demos this process builds.
    PREVIEW_FOLDER.mkdir(parents=True, exist_ok=True)
    if not gr.utils.is_static_file(str(PREVIEW_FOLDER)):
        gr.set_static_paths([PREVIEW_FOLDER])
    with gr.Blocks(title="Siamese image similarity") as demo:
        gr.Markdown(
            "# Siamese image similarity\nA Siamese network maps each image to an embedding; images of the same "
            "class lie close together. Compare two images, identify one against a gallery, or explore the map."
        )
        notes = list(app.registry.notes)
        if faces is None:
            notes.append(
                "No example faces here (scikit-learn's Olivetti faces are not cached): face models work on your own "
                "uploads only."
            )
        if not names:
            notes.append("No model could be loaded, so nothing can be compared. Pass --model user/repo.")
        gr.Markdown("\n".join(f"- {note}" for note in notes), visible=bool(notes), elem_id="model_notes")
        if faces is not None or "faces" in names:
            gr.Markdown(FACES_CREDIT, elem_id="faces_credit")
        with gr.Row():
            model_name = gr.Dropdown(
                names, value=names[0] if names else None, label="Model", elem_id="model_picker", scale=1
            )
            with gr.Accordion("About this model", open=False, elem_id="about_model"):
                about = gr.Markdown(elem_id="model_info")

        with gr.Tab("Pair similarity", elem_id="pair_tab"):
            with gr.Row():
                with gr.Column():
                    side_a = _image_input(app, "pair_a", "Image A", "image A")
                with gr.Column():
                    side_b = _image_input(app, "pair_b", "Image B", "image B")
            compare_button = gr.Button("Compare", variant="primary", elem_id="compare_button")
            with gr.Row():
                with gr.Column():
                    pair_verdict = gr.Markdown(elem_id="pair_verdict")
                    pair_preview = gr.Image(
                        label="What the model sees", interactive=False, format="png", elem_id="pair_preview"
                    )
                    pair_details = gr.JSON(label="Details", elem_id="pair_details")
                pair_plot = gr.Plot(label="Distance distributions", elem_id="pair_plot")
            example_columns: dict[str, list[gr.Column]] = {"digits": [], "faces": []}
            pair_examples = []
            with gr.Column(visible=show_digits, elem_id="digit_pair_examples") as column:
                pair_examples.append(_pair_examples(digits, [side_a.upload, side_b.upload], "Digit pairs (click)"))
            example_columns["digits"].append(column)
            if faces is not None:
                with gr.Column(visible=show_faces, elem_id="face_pair_examples") as column:
                    pair_examples.append(_pair_examples(faces, [side_a.upload, side_b.upload], "Face pairs (click)"))
                example_columns["faces"].append(column)

        with gr.Tab("One-shot gallery", elem_id="gallery_tab"):
            gallery_state = gr.State(None)
            with gr.Row():
                with gr.Column():
                    gallery_files = gr.File(
                        label="Gallery images (label from the name: alice_1.png -> alice), or a .zip of class folders",
                        file_count="multiple",
                        file_types=["image", ".zip"],
                        elem_id="gallery_files",
                    )
                    captions = gr.Textbox(
                        label="Labels (optional: one per image, in upload order, comma or line separated)",
                        elem_id="gallery_captions",
                    )
                    build_button = gr.Button("Build gallery", variant="primary", elem_id="build_gallery_button")
                    with gr.Row():
                        kinds = ["digits", "faces"] if faces is not None else ["digits"]
                        first_kind = app.model_kind(names[0]) if names else "digits"
                        example_kind = gr.Radio(
                            kinds,
                            value=first_kind if first_kind in kinds else kinds[0],
                            label="Example gallery",
                            elem_id="example_kind",
                        )
                        per_label = gr.Slider(1, 100, value=1, step=1, label="Images per label", elem_id="per_label")
                    example_button = gr.Button("Load example gallery", elem_id="load_example_gallery_button")
                    saved_gallery = gr.File(
                        label="Or a saved gallery of any size (.safetensors from `siamese embed`)",
                        file_types=[".safetensors"],
                        elem_id="saved_gallery_file",
                    )
                    saved_button = gr.Button("Load saved gallery", elem_id="load_saved_gallery_button")
                with gr.Column():
                    gallery_status = gr.Markdown("No gallery yet.", elem_id="gallery_status")
                    gallery_preview = gr.Gallery(
                        label="Gallery", columns=8, height=260, format="png", elem_id="gallery_preview"
                    )
            with gr.Row():
                with gr.Column():
                    query = _image_input(app, "query", "Query", "query")
                    top_k = gr.Slider(1, 20, value=5, step=1, label="Top matches", elem_id="top_k")
                    rank_button = gr.Button("Rank query", variant="primary", elem_id="rank_button")
                with gr.Column():
                    rank_verdict = gr.Markdown(elem_id="rank_verdict")
                    rank_table = gr.Dataframe(
                        headers=["rank", "label", "distance", "similarity", "file"], elem_id="rank_table"
                    )
                    rank_matches = gr.Gallery(
                        label="Top matches", columns=5, height=160, format="png", elem_id="rank_matches"
                    )
            queries = example_data.query_examples(digits)
            query_examples = []
            with gr.Column(visible=show_digits, elem_id="digit_query_examples") as column:
                query_examples.append(_file_examples(queries, query.upload, "Digit queries (click to rank)"))
            example_columns["digits"].append(column)
            if faces is not None:
                face_queries = example_data.query_examples(faces)
                with gr.Column(visible=show_faces, elem_id="face_query_examples") as column:
                    query_examples.append(_file_examples(face_queries, query.upload, "Face queries (click to rank)"))
                example_columns["faces"].append(column)

        with gr.Tab("Interactive t-SNE", elem_id="map_tab"), gr.Row():
            with gr.Column(scale=1):
                points = gr.Slider(100, 10_000, value=1000, step=100, label="Reference points", elem_id="map_points")
                perplexity = gr.Slider(5, 50, value=30, step=1, label="Perplexity", elem_id="map_perplexity")
                map_files = gr.File(
                    label="Your images to place on the map",
                    file_count="multiple",
                    file_types=["image"],
                    elem_id="map_files",
                )
                map_button = gr.Button("Draw map", variant="primary", elem_id="map_button")
                map_examples = []
                with gr.Column(visible=show_digits, elem_id="digit_map_examples") as column:
                    map_examples.append(gr.Examples([[queries]], [map_files], label="Place example digits (click)"))
                example_columns["digits"].append(column)
                if faces is not None:
                    with gr.Column(visible=show_faces, elem_id="face_map_examples") as column:
                        map_examples.append(
                            gr.Examples([[face_queries]], [map_files], label="Place example faces (click)")
                        )
                    example_columns["faces"].append(column)
                map_point_image = gr.Image(
                    label="Clicked point", interactive=False, height=180, format="png", elem_id="map_point_image"
                )
                map_point_caption = gr.Markdown(elem_id="map_point_caption")
                map_selection = gr.Textbox(visible="hidden", elem_id="map_selection")
            with gr.Column(scale=3):
                map_plot = gr.Plot(label="t-SNE of embeddings", elem_id="map_plot")
                map_note = gr.Markdown(elem_id="map_note")

        def embedding_map(model_name, points, perplexity, files, progress=gr.Progress()):  # noqa: B008 - gradio's idiom
            return app.embedding_map(model_name, points, perplexity, files, progress=progress)

        def compare_pair(model_name, drawing_a, upload_a, drawing_b, upload_b, choice_a=None, choice_b=None):
            verdict, details, plot, preview = app.compare_pair(
                model_name, drawing_a, upload_a, drawing_b, upload_b, choice_a, choice_b
            )
            return verdict, details, plot, _preview_file(preview)  # a file, not an array: see _preview_file

        # Every action first clears its outputs, so an error never sits beside an earlier result.
        pair_inputs = [model_name, side_a.drawing, side_a.upload, side_b.drawing, side_b.upload]
        pair_inputs += [side_a.choice, side_b.choice]
        pair_outputs = [pair_verdict, pair_details, pair_plot, pair_preview]
        rank_inputs = [model_name, gallery_state, query.drawing, query.upload, top_k, query.choice]
        rank_outputs = [gallery_state, rank_verdict, rank_table, rank_matches]
        gallery_outputs = [gallery_state, gallery_status, gallery_preview]
        map_inputs = [model_name, points, perplexity, map_files]
        map_outputs = [map_plot, map_note, map_point_image, map_point_caption]
        quiet = {"show_progress": "hidden", "api_visibility": "private"}

        def clear_pair():
            return "", None, None, None

        def clear_rank(state):
            return state, "", None, None

        def clear_gallery():
            return None, "No gallery yet.", None

        def clear_map():
            return None, "", None, ""

        def draw_map(model_name, points, perplexity, files, progress=gr.Progress()):  # noqa: B008 - gradio's idiom
            figure, note = embedding_map(model_name, points, perplexity, files, progress)
            return figure, note, None, ""

        # Clicking an example fills the inputs, shows them, and then runs the tab's action like its button.
        pair_uploads = [side_a.upload, side_b.upload]
        pair_choices = [side_a.choice, side_a.using, side_b.choice, side_b.using]
        for examples in pair_examples:
            examples.load_input_event.then(None, pair_uploads, pair_choices, js=USE_EXAMPLES_JS, **quiet).then(
                _show_upload_tabs, pair_uploads, [side_a.tabs, side_b.tabs], queue=False, **quiet
            ).then(clear_pair, None, pair_outputs, **quiet).then(
                compare_pair,
                pair_inputs,
                pair_outputs,
                api_name="example_pair",
                api_visibility="private",
                show_progress="minimal",
            )
        for examples in query_examples:
            query_choice = [query.choice, query.using]
            examples.load_input_event.then(None, [query.upload], query_choice, js=USE_EXAMPLES_JS, **quiet).then(
                _show_upload_tabs, [query.upload], [query.tabs], queue=False, **quiet
            ).then(clear_rank, gallery_state, rank_outputs, **quiet).then(
                app.rank_query,
                rank_inputs,
                rank_outputs,
                api_name="example_query",
                api_visibility="private",
                show_progress="minimal",
            )
        for examples in map_examples:
            examples.load_input_event.then(clear_map, None, map_outputs, **quiet).then(
                draw_map,
                map_inputs,
                map_outputs,
                api_name="example_map",
                api_visibility="private",
                show_progress="minimal",
                concurrency_limit=MAP_CONCURRENCY_LIMIT,
            )

        def model_changed(model_name):
            show = dict(zip(("digits", "faces"), app.example_visibility(model_name), strict=True))
            kind = app.model_kind(model_name) if model_name else None
            columns = [gr.Column(visible=show[key]) for key in ("digits", "faces") for _ in example_columns[key]]
            return [app.model_info(model_name), *columns, gr.Radio(value=kind) if kind in kinds else gr.Radio()]

        all_columns = example_columns["digits"] + example_columns["faces"]
        model_name.change(app.model_info, model_name, about, api_name="model_info")
        model_name.change(model_changed, model_name, [about, *all_columns, example_kind], **quiet)
        demo.load(app.model_info, model_name, about, api_visibility="private")
        demo.load(None, None, None, js=PAGE_JS)
        # "minimal" progress shows the time elapsed and no estimate: gradio's estimate is an average over earlier
        # calls, which misleads when one map is cached and the next is not.
        compare_button.click(clear_pair, None, pair_outputs, **quiet).then(
            compare_pair, pair_inputs, pair_outputs, api_name="compare_pair_page", api_visibility="private",
            show_progress="minimal",
        )  # fmt: skip
        # The public API keeps its shape (model, drawing A, upload A, drawing B, upload B; top_k for queries):
        # the page's hidden "which input is in use" fields are the page's own, so API calls go through hidden
        # buttons that leave them out (a given upload then wins over a drawing).
        api_compare = gr.Button(visible=False, elem_id="api_compare_pair")
        api_compare.click(compare_pair, pair_inputs[:5], pair_outputs, api_name="compare_pair")
        api_rank = gr.Button(visible=False, elem_id="api_rank_query")
        api_rank.click(app.rank_query, rank_inputs[:5], rank_outputs, api_name="rank_query")
        build_button.click(clear_gallery, None, gallery_outputs, **quiet).then(
            app.build_gallery,
            [model_name, gallery_files, captions],
            gallery_outputs,
            api_name="build_gallery",
            show_progress="minimal",
        )
        example_button.click(clear_gallery, None, gallery_outputs, **quiet).then(
            app.load_example_gallery,
            [model_name, example_kind, per_label],
            gallery_outputs,
            api_name="load_example_gallery",
            show_progress="minimal",
        )
        rank_button.click(clear_rank, gallery_state, rank_outputs, **quiet).then(
            app.rank_query, rank_inputs, rank_outputs, api_name="rank_query_page", api_visibility="private",
            show_progress="minimal",
        )  # fmt: skip
        map_button.click(clear_map, None, map_outputs, **quiet).then(
            embedding_map,
            map_inputs,
            [map_plot, map_note],
            api_name="embedding_map",
            show_progress="minimal",
            concurrency_limit=MAP_CONCURRENCY_LIMIT,
        )
        map_selection.change(
            app.map_point,
            [model_name, points, perplexity, map_selection, map_files],
            [map_point_image, map_point_caption],
            **quiet,
        )
        saved_button.click(clear_gallery, None, gallery_outputs, **quiet).then(
            app.load_saved_gallery,
            [model_name, saved_gallery],
            gallery_outputs,
            api_name="load_saved_gallery",
            show_progress="minimal",
        )
    demo.siamese_app = app  # tests and benchmarks reach the handlers through the demo
    return demo


def launch_options(host: str | None = None, port: int | None = None, share: bool = False) -> dict:
    """The keyword arguments for demo.launch(): upload limit, and the example cache as an allowed path."""
    return {
        "server_name": host,
        "server_port": port,
        "share": share,
        "max_file_size": MAX_FILE_SIZE,
        "allowed_paths": [str(example_data.cache_dir())],
        "show_error": True,
    }


def serve_in_background(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None) -> str:
    """Queue and launch `demo` without blocking (tests, benchmarks, screenshots); returns its URL."""
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(host, port or free_port()))
    return url


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Siamese image similarity demo")
    parser.add_argument("--model", action="append", default=[], help="extra model: Hub repo id or local folder")
    parser.add_argument("--no-bundled", action="store_true", help="serve only the --model models")
    parser.add_argument("--mnist-root", default=os.environ.get(example_data.MNIST_ROOT_ENV))
    parser.add_argument("--faces-root", default=os.environ.get(example_data.FACES_ROOT_ENV))
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860 or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    return parser.parse_args(argv)


def model_specs(args: argparse.Namespace) -> tuple[list[ModelSpec], dict[str, Path]]:
    """Bundled models (those present) plus --model and $SIAMESE_MODELS; the missing bundled ones apart."""
    specs, missing = [], {}
    if not args.no_bundled:
        for name, folder in BUNDLED_MODELS.items():
            if folder.is_dir():
                specs.append(ModelSpec(name, str(folder)))
            else:
                missing[name] = folder
    extra = list(args.model) + [item for item in os.environ.get(MODELS_ENV, "").split(",") if item.strip()]
    specs += [ModelSpec.parse(item) for item in extra]
    return specs, missing


M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
MALLOC_ARENAS = 2


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc at `count` arenas, as MALLOC_ARENA_MAX would; True when the cap was set.

    Every server thread would otherwise get an arena of its own (up to 8 per core), and freed request buffers stay
    scattered over them: under load the server's RSS grew 18-42 MB per 1,000 requests and kept climbing; with 2 it
    grew 5-25 MB (benchmarks/app_load.py).
    Left alone where MALLOC_ARENA_MAX is already set, and where the C library is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> None:
    # First, before model loading and the server start threads that would each take an arena.
    limit_malloc_arenas()
    args = parse_args(argv)
    specs, missing = model_specs(args)
    # A Space has a network; elsewhere the faces are only used if already cached.
    download_faces = bool(os.environ.get("SPACE_ID"))
    app = SimilarityApp(specs, args.mnist_root, args.faces_root, download_faces, missing)
    demo = build_demo(mnist_root=args.mnist_root, faces_root=args.faces_root, download_faces=download_faces, app=app)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)
    demo.launch(**launch_options(args.host, args.port, args.share))


if __name__ == "__main__":
    main()
