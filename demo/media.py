"""Image files the page shows: previews written once under their content's name, and uploads browsers can show.

Both live in bounded stores (siamese.serving.storage.FileStore): over the cap set by $SIAMESE_PREVIEW_CAP_MB the
least recently used go first, never one used within $SIAMESE_PREVIEW_GRACE seconds. $SIAMESE_PREVIEW_DIR moves
them (default: the temp folder).
"""

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
from siamese.serving.storage import DiskLimits, FileStore

PREVIEW_DIR_ENV = "SIAMESE_PREVIEW_DIR"
LIMITS = DiskLimits.from_environment()
_ROOT = Path(os.environ.get(PREVIEW_DIR_ENV) or tempfile.gettempdir())
PREVIEW_FOLDER = _ROOT / "siamese_previews"
# PNG copies of uploads in formats browsers do not show. Not under PREVIEW_FOLDER: Gradio takes an upload box's value
# back only from its own cache, so these must be copied there, which a static path would prevent.
SHOWN_UPLOAD_FOLDER = _ROOT / "siamese_shown_uploads"
PREVIEWS = FileStore(PREVIEW_FOLDER, LIMITS.preview_cap_bytes, LIMITS.preview_grace)
SHOWN_UPLOADS = FileStore(SHOWN_UPLOAD_FOLDER, LIMITS.preview_cap_bytes, LIMITS.preview_grace)
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


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def preview_file(image: np.ndarray) -> str:
    """A (H, W, 3) or (H, W) image as a PNG named by its content, written once under a temporary name, then renamed.

    Gradio saves an array output by rewriting, in place, a file named by the image's hash, so two requests with
    the same preview truncate that file while a client may be downloading it (h11 "Too little data for declared
    Content-Length"; gradio-app/gradio#8878). A path output is copied into Gradio's cache atomically instead, and
    this file never changes; it stays in PREVIEWS for at least the grace period.
    """
    return str(PREVIEWS.keep_bytes(png_bytes(image)))


def thumbnail_png(image: Image.Image) -> bytes:
    """A gallery reference's thumbnail as PNG bytes, what a session's gallery keeps of it (see thumbnail_files)."""
    return png_bytes(thumbnail(image))


def thumbnail_files(pictures: list[tuple[bytes, str]]) -> list[tuple[str, str]]:
    """(thumbnail PNG, caption) pairs as (preview file, caption) for a gr.Gallery. The file is written again when
    the store has removed it since, so a gallery kept in a session for hours still shows its thumbnails."""
    return [(str(PREVIEWS.keep_bytes(data)), caption) for data, caption in pictures]


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
    """`path` itself when browsers show its format, else a PNG copy of it (named after it, in a bounded store)."""
    if Path(path).suffix.lower() in BROWSER_SUFFIXES:
        return path

    def write(file) -> None:
        open_image(path, name=Path(path).name).save(file, format="PNG")

    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]
    return str(SHOWN_UPLOADS.keep(f"{digest}/{Path(path).stem}.png", write))
