"""Image files the page shows: previews written once under their content's name, and uploads browsers can show."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from siamese.data.images import open_image
from siamese.serving import thumbnail

PREVIEW_FOLDER = Path(tempfile.gettempdir()) / "siamese_previews"
PREVIEW_IMAGES = 40  # gallery thumbnails shown under a gallery's summary
# Formats every browser shows; others (.pgm, .tif, ...) are shown as a PNG copy.
BROWSER_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def register_preview_folder() -> None:
    """Serve the preview folder as a static path.

    Previews and thumbnails are written once under content names (see preview_file): served from where they lie,
    they skip Gradio's hash-and-copy into its cache on every request. set_static_paths appends, and Gradio checks
    every output file against each entry, so the folder is registered once however many demos this process builds.
    """
    PREVIEW_FOLDER.mkdir(parents=True, exist_ok=True)
    if not gr.utils.is_static_file(str(PREVIEW_FOLDER)):
        gr.set_static_paths([PREVIEW_FOLDER])


def preview_file(image: np.ndarray) -> str:
    """A (H, W, 3) or (H, W) image as a PNG named by its content, written once under a temporary name, then renamed.

    Gradio saves an array output by rewriting, in place, a file named by the image's hash, so two requests with
    the same preview truncate that file while a client may be downloading it (h11 "Too little data for declared
    Content-Length"; gradio-app/gradio#8878). A path output is copied into Gradio's cache atomically instead, and
    this file never changes.
    """
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


def thumbnail_file(image: Image.Image) -> str:
    """A gallery reference's thumbnail as a preview file: shown in the gallery and among the matches."""
    return preview_file(thumbnail(image))


def side_by_side(images: list[torch.Tensor], height: int = 112) -> np.ndarray:
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


def browser_image(path: str) -> str:
    """`path` itself when browsers show its format, else a PNG copy of it (in the temp folder, named after it)."""
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
