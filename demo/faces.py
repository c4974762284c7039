"""Face answers as pictures: each photo with its face boxes drawn (and the names a gallery gave them), beside the
aligned chips the model saw."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from demo.media import side_by_side
from siamese.serving import GalleryAnswer, PairComparison, PreparedInput

PHOTO_HEIGHT = 220  # each photo of a pair, above its chip
NAMED_PHOTO_SIDE = 640  # a gallery query's photo, its longer side
MATCH_COLOUR = (40, 200, 80)
STRANGER_COLOUR = (230, 60, 50)
GAP = 8


def scaled(picture: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, float]:
    """An RGB copy of `picture` fitted into `size` (never enlarged past 4x), and the scale applied."""
    scale = min(size[0] / picture.width, size[1] / picture.height, 4.0)
    width, height = max(1, round(picture.width * scale)), max(1, round(picture.height * scale))
    return picture.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), scale


def draw_box(draw: ImageDraw.ImageDraw, box, scale: float, colour, caption: str | None = None) -> None:
    """A face box (left, top, right, bottom) in the photo's pixels, drawn at `scale`, with a caption above it."""
    left, top, right, bottom = (round(value * scale) for value in box)
    width = max(2, round(min(draw.im.size) / 150))
    draw.rectangle((left, top, right, bottom), outline=colour, width=width)
    if caption:
        font = ImageFont.load_default(size=max(12, min(24, round((right - left) / 5))))
        text_box = draw.textbbox((left, top), caption, font=font)
        height = text_box[3] - text_box[1] + 6
        y = top - height if top >= height else bottom
        draw.rectangle((left, y, left + text_box[2] - text_box[0] + 8, y + height), fill=colour)
        draw.text((left + 4, y + 3 - (text_box[1] - top)), caption, fill=(255, 255, 255), font=font)


def boxed_photo(prepared: PreparedInput, size: tuple[int, int]) -> np.ndarray:
    """The input photo fitted into `size`, with the box of the face the model used: (H, W, 3) uint8."""
    photo, scale = scaled(prepared.picture, size)
    draw = ImageDraw.Draw(photo)
    for face in prepared.faces[:1]:
        draw_box(draw, face.face.box, scale, MATCH_COLOUR)
    return np.asarray(photo)


def stacked(rows: list[np.ndarray]) -> np.ndarray:
    """Images (H, W, 3) one under another on a grey background, left aligned."""
    width = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, GAP), (0, width - row.shape[1]), (0, 0)), constant_values=128) for row in rows]
    return np.concatenate(padded, axis=0)[:-GAP]


def pair_preview(comparison: PairComparison) -> np.ndarray:
    """What the model sees: for a face model each photo with the face box drawn, above the aligned chips side by
    side; for any other model the inputs as the model takes them."""
    chips = side_by_side(comparison.images)
    if not any(prepared.faces for prepared in comparison.inputs):
        return chips
    photos = [boxed_photo(prepared, (2 * PHOTO_HEIGHT, PHOTO_HEIGHT)) for prepared in comparison.inputs]
    height = max(photo.shape[0] for photo in photos)
    row = np.concatenate(
        [np.pad(photo, ((0, height - photo.shape[0]), (0, GAP), (0, 0)), constant_values=128) for photo in photos],
        axis=1,
    )
    return stacked([row, chips])


def named_faces_picture(answer: GalleryAnswer) -> np.ndarray | None:
    """The query photo with every face boxed and named (green: a gallery label; red: no match), numbered largest
    first as the answer lists them; None when the answer named no faces (not a face model)."""
    if not answer.faces or answer.query is None:
        return None
    photo, scale = scaled(answer.query.picture, (NAMED_PHOTO_SIDE, NAMED_PHOTO_SIDE))
    draw = ImageDraw.Draw(photo)
    numbered = len(answer.faces) > 1
    for position, named in enumerate(answer.faces, start=1):
        caption = named.name if named.name is not None else "no match"
        caption = f"{position}. {caption}" if numbered else caption
        colour = MATCH_COLOUR if named.name is not None else STRANGER_COLOUR
        draw_box(draw, named.found.face.box, scale, colour, caption)
    return np.asarray(photo)
