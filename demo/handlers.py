"""Every function the page and the HTTP API call: pick the inputs, make one library call, render the answer.

The rules that decide answers live in `siamese.serving`; here its user errors become gr.Error (shown in the page,
kept out of the server log) and its notices gr.Info and gr.Warning pop-ups.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from demo.examples import EXAMPLE_FACES_FOLDER
from demo.faces import named_faces_picture, pair_preview
from demo.inputs import file_paths, image_slot
from demo.media import PREVIEW_IMAGES, browser_image, preview_file, thumbnail_files, thumbnail_png
from demo.plots import distance_plot
from demo.render import (
    gallery_summary,
    map_note,
    match_thumbnails,
    model_info_markdown,
    pair_markdown,
    query_markdown,
    ranking_rows,
    saved_gallery_summary,
    with_cautions,
)
from siamese.data.images import ImageError
from siamese.data.uploads import UploadError
from siamese.evaluation.embedding_map import map_figure
from siamese.modeling.files import ModelLoadError
from siamese.search.index import GalleryFileError
from siamese.serving import (
    ExampleSources,
    GalleryState,
    ModelSpec,
    ServingError,
    SimilarityService,
    open_usable_image,
    thumbnail,
)

# The library's exceptions whose message is meant for the user.
USER_ERRORS = (ServingError, ImageError, UploadError, GalleryFileError, ModelLoadError)
MAP_POINT_SIZE = 160


def user_error(message: str) -> gr.Error:
    """A gr.Error for a mistake the user can fix: shown in the page, kept out of the server log."""
    return gr.Error(message, print_exception=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's user errors into gr.Error with the same message."""
    try:
        yield
    except USER_ERRORS as error:
        raise user_error(str(error)) from error


class PageNotices:
    """The library's notices as the page's pop-ups (outside a request, Gradio issues them as Python warnings)."""

    def info(self, message: str) -> None:
        gr.Info(message)

    def warning(self, message: str) -> None:
        gr.Warning(message)


class SimilarityApp:
    """Every handler the page calls. Each takes the page's values and returns what its outputs show, or raises
    gr.Error."""

    def __init__(
        self,
        specs: list[ModelSpec],
        mnist_root: str | None = None,
        faces_root: str | None = None,
        download_faces: bool = False,
        missing: dict[str, Path] | None = None,
    ):
        sources = ExampleSources(mnist_root, faces_root, download_faces, str(EXAMPLE_FACES_FOLDER))
        self.service = SimilarityService(specs, sources, missing, notices=PageNotices(), picture=thumbnail_png)
        self.registry = self.service.registry

    # ----- model picker -----

    def model_info(self, model_name: str | None) -> str:
        """Markdown for the "About this model" panel: data, test metrics, threshold; no machine paths."""
        with user_errors():
            model = self.registry.get(model_name)
        spec, metrics = self.registry.specs[model_name], self.registry.metrics.get(model_name)
        return model_info_markdown(model_name, model, spec, metrics)

    def model_kind(self, model_name: str | None) -> str:
        with user_errors():
            return self.service.model_kind(model_name)

    def example_visibility(self, model_name: str | None) -> tuple[bool, bool]:
        """Whether digit and face examples fit the chosen model."""
        kind = self.model_kind(model_name) if model_name else None
        return kind == "digits", kind == "faces"

    # ----- image inputs -----

    def show_upload(self, path: str | None, side: str):
        """An uploaded file as the browser can show it (PNG unless already PNG, JPEG, GIF or WebP), the choice
        of input it makes ("upload") and the line that says so."""
        if not path:
            return None, "drawing", f"Using: {side} drawing (no file uploaded)."
        with user_errors():
            open_usable_image(path, Path(path).name)  # a bad file is reported on upload, not only on Compare
            shown = browser_image(path)
        return shown, "upload", f"Using: uploaded file **{html.escape(Path(path).name)}**."

    @staticmethod
    def choose_drawing(side: str):
        """The choice and the line after the user draws: the drawing now wins over an upload."""
        return "drawing", f"Using: {side} drawing."

    # ----- tab 1: pair similarity -----

    def compare_pair(self, model_name, drawing_a, upload_a, drawing_b, upload_b, choice_a=None, choice_b=None):
        """Verdict, details, distance plot and what the model sees (a PNG file; for a face model each photo with
        the face box drawn, above the aligned chips) for two images, each drawn or uploaded (the input touched last
        wins)."""
        slots = [image_slot(drawing_a, upload_a, "A", choice_a), image_slot(drawing_b, upload_b, "B", choice_b)]
        with user_errors():
            comparison = self.service.compare_pair(model_name, slots)
        figure = distance_plot(comparison.calibration, comparison.distance)
        # A file, not an array: see preview_file.
        return pair_markdown(comparison), comparison.result, figure, preview_file(pair_preview(comparison))

    # ----- tab 2: one-shot gallery -----

    def build_gallery(self, model_name, files, captions: str = ""):
        """Embed uploaded files as a gallery. Labels: the captions (one per image), else the class folder
        (a folder or .zip of class sub-folders), else the file name."""
        with user_errors():
            state = self.service.build_gallery(model_name, file_paths(files), captions)
        return gallery_outputs(state)

    def load_example_gallery(self, model_name, example_kind: str = "digits", per_label: int = 1):
        """A gallery of `per_label` example images per class, from the built-in examples of the model's domain."""
        with user_errors():
            state = self.service.example_gallery(model_name, example_kind, per_label)
        return gallery_outputs(state)

    def load_saved_gallery(self, model_name, file):
        """A gallery file written by `siamese embed`: any size, searched through its index, no re-embedding."""
        with user_errors():
            state = self.service.saved_gallery(model_name, file_paths(file))
        return state, saved_gallery_summary(state), []

    def rank_query(self, model_name, state: GalleryState | None, drawing, upload, top_k: int = 5, choice=None):
        """Rank one query image against the session's gallery: top matches, margin, or "no match". A face model
        names every face of the query (the table and matches are the largest face's)."""
        return self.rank_query_with_faces(model_name, state, drawing, upload, top_k, choice)[:4]

    def rank_query_with_faces(self, model_name, state, drawing, upload, top_k: int = 5, choice=None):
        """rank_query's answer and, for a face model, the query photo with every face boxed and named (a PNG
        file; None for other models): what the page shows."""
        query = image_slot(drawing, upload, "query", choice)
        with user_errors():
            answer = self.service.rank_query(model_name, state, query, top_k)
        text = with_cautions(query_markdown(answer), answer.cautions)
        rows = ranking_rows(answer.ranking, answer.threshold)  # a saved gallery's match names are its relative paths
        named = named_faces_picture(answer)
        thumbnails = thumbnail_files(match_thumbnails(answer.state, answer.ranking))
        return answer.state, text, rows, thumbnails, None if named is None else preview_file(named)

    # ----- tab 3: t-SNE map -----

    def embedding_map(self, model_name, points=1000, perplexity=30, files=None, progress=gr.Progress()):  # noqa: B008 - gradio's idiom
        """A t-SNE map of reference embeddings (cached per model, points, perplexity), with the user's images on it."""
        with user_errors():
            drawn = self.service.embedding_map(model_name, points, perplexity, file_paths(files), progress)
        figure = map_figure(drawn.embedding_map, drawn.placed, drawn.user_names, drawn.nearest)
        progress(1.0, desc="Done")
        return figure, map_note(drawn)

    def map_point(self, model_name, points, perplexity, selection: str | None, files=None):
        """The image behind a clicked map point: `selection` is "reference:<index>" or "yours:<position>"."""
        if not selection or ":" not in selection:
            return None, ""
        which, _, number = selection.partition(":")
        if not number.isdigit():
            return None, ""
        with user_errors():
            image, caption = self.service.map_point(
                model_name, points, perplexity, which, int(number), file_paths(files)
            )
        return (None if image is None else thumbnail(image, MAP_POINT_SIZE)), caption


def gallery_outputs(state: GalleryState):
    """A built gallery's state, summary and first thumbnails with their labels."""
    preview = list(zip(state.thumbnails, state.labels, strict=True))[:PREVIEW_IMAGES]
    return state, gallery_summary(state), thumbnail_files(preview)
