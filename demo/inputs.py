"""Image inputs on the page: a drawing pad and an upload box per slot, and their values as the library takes them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np
from PIL import Image

from siamese.serving import ImageSlot

if TYPE_CHECKING:
    from demo.handlers import SimilarityApp

QUIET = {"show_progress": "hidden", "api_visibility": "private"}  # page-only events: no spinner, not in the API


class ImageUpload(gr.Image):
    """gr.Image for uploads, handing the handler the uploaded file untouched.

    gr.Image would open the file with PIL before the handler runs, so a damaged file or a
    decompression bomb became a traceback; siamese.data.images decodes it instead, with a clear message.
    """

    is_template = True  # the browser side is gr.Image's own

    def preprocess(self, payload):
        return None if payload is None else payload.path


@dataclass
class ImageInput:
    """One image slot on the page: a drawing pad and an upload box in tabs, which of the two is in use, and a line
    that says so."""

    tabs: gr.Tabs
    drawing: gr.Sketchpad
    upload: ImageUpload
    choice: gr.Textbox
    using: gr.Markdown


def image_input(app: SimilarityApp, prefix: str, label: str, side: str) -> ImageInput:
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
                sources=["upload", "webcam", "clipboard"],  # the webcam: a face to compare or to name
                height=280,
                elem_id=f"{prefix}_upload",
            )
    using = gr.Markdown("Using: nothing yet (draw or upload an image).", elem_id=f"{prefix}_using")
    drawing_choice, drawing_line = app.choose_drawing(side)
    drawing.input(None, None, [choice, using], js=f"() => {json.dumps([drawing_choice, drawing_line])}", **QUIET)
    upload.upload(lambda path: app.show_upload(path, side), upload, [upload, choice, using], **QUIET)
    upload.clear(lambda: app.show_upload(None, side), None, [upload, choice, using], **QUIET)
    return ImageInput(tabs, drawing, upload, choice, using)


def file_paths(files) -> list[str]:
    """gr.File values (None, a path, a list of paths or of objects with .name) -> a list of paths."""
    if files is None:
        return []
    if isinstance(files, str | Path):
        return [str(files)]
    return [str(getattr(item, "name", item)) for item in files if item]


def sketch_image(drawing) -> Image.Image | None:
    """A Sketchpad value -> an RGB PIL image of black ink on white, or None when nothing was drawn."""
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


def image_slot(drawing, upload, side: str, choice: str | None = None) -> ImageSlot:
    """A slot's page values (Sketchpad value, upload path, hidden choice) as the library's ImageSlot."""
    return ImageSlot(sketch_image(drawing), file_paths(upload), side, choice)
