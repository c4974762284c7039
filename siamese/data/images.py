"""Decoding images safely, and bringing them to the form a model was trained on.

Used for training folders and for a web app's uploads alike, so every failure is an `ImageError`
that names the file and says what is wrong; nothing is ever unpickled.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from siamese.faces.pipeline import FoundFace, find_largest_face

# Refuse images with more pixels than this (decompression bombs); 40 MP covers any real photo.
MAX_PIXELS = 40_000_000
MNIST_BOX = 20  # MNIST digits fit a 20x20 box ...
MNIST_SIZE = 28  # ... centred by mass in a 28x28 image.


class ImageError(ValueError):
    """An image that cannot be used; the message names the source and the problem."""


class NoFaceError(ImageError):
    """A photo given to a face model shows no face that the detector finds."""


# Preprocessing of models that see dlib-aligned face chips: the face is found, then aligned to 150x150 RGB.
ALIGNED_FACES = "aligned_faces"


def aligns_faces(preprocessing: dict | None) -> bool:
    """Whether a model with this preprocessing sees aligned face chips, so its inputs go through the face step."""
    return (preprocessing or {}).get("kind") == ALIGNED_FACES


def open_image(source, name: str | None = None) -> Image.Image:
    """Decode a path, bytes, PIL image or numpy array into a fully loaded RGB or L image.

    Animated images give their first frame; an EXIF orientation is applied; alpha is composited on white;
    16-bit and 32-bit grey are scaled to 8 bits; CMYK, palette and 1-bit images are converted.
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "the image")
    if source is None:
        raise ImageError("no image was given")
    if isinstance(source, np.ndarray):
        return _from_array(source, label)
    if isinstance(source, Image.Image):
        image = source
    else:
        stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        if isinstance(stream, (str, Path)) and not Path(stream).is_file():
            raise ImageError(f"{label}: no such file")
        image = _decode(stream, label)
    # Phone cameras store the pixels sideways and an EXIF tag saying how to turn them: a face on its side is not
    # found, so the image is turned as viewers show it (a no-op once turned: the tag is then gone).
    return _to_standard_mode(_upright(image, label), label)


def _upright(image: Image.Image, label: str) -> Image.Image:
    """The image as its EXIF orientation says it is shown (unchanged when it has none)."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, TypeError) as error:  # a damaged EXIF block: keep the pixels as stored
        warnings.warn(
            f"{label}: its EXIF orientation could not be read ({error}); the image is used as stored", stacklevel=3
        )
        return image


def _decode(stream, label: str) -> Image.Image:
    previous_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x the limit; treat that as a bomb too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
            image.seek(0)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{label}: the image is too large (over {MAX_PIXELS:,} pixels)") from error
    except UnidentifiedImageError as error:
        raise ImageError(f"{label}: not an image file PIL can read") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{label}: the image is damaged or truncated ({error})") from error
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit
    return image


def _from_array(array: np.ndarray, label: str) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or array.size == 0:
        raise ImageError(f"{label}: expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise ImageError(f"{label}: the image is too large (over {MAX_PIXELS:,} pixels)")
    if array.dtype != np.uint8:
        array = np.asarray(array, dtype=np.float64)
        top = 1.0 if array.max(initial=0) <= 1.0 else (255.0 if array.max() <= 255 else 65535.0)
        array = np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8)
    return _to_standard_mode(Image.fromarray(array), label)


def _to_standard_mode(image: Image.Image, label: str) -> Image.Image:
    """Any PIL mode -> 'L' (grey) or 'RGB'."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if image.mode == "F" and values.max(initial=0) <= 1.0:
            top = 1.0  # float images in 0..1 (scientific TIFFs): scaled by 255, or they read as black
        return Image.fromarray(np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "CMYK":
        return image.convert("RGB")
    if image.mode in ("1", "P"):
        return image.convert("RGB" if image.mode == "P" else "L")
    try:
        return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise ImageError(f"{label}: unsupported image mode {image.mode}") from error


def image_to_tensor(image: Image.Image, preprocessing: dict) -> torch.Tensor:
    """A decoded image -> uint8 (C, H, W) at the model's size and channel count."""
    if preprocessing.get("kind") == "digits":
        return digit_to_mnist(image)
    height, width = preprocessing.get("size", [image.height, image.width])
    grey = preprocessing.get("grayscale", True)
    converted = image.convert("L" if grey else "RGB").resize((int(width), int(height)), Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if grey else tensor.permute(2, 0, 1).contiguous()  # (C, H, W)


def digit_to_mnist(image: Image.Image) -> torch.Tensor:
    """A drawn or photographed digit -> MNIST form, uint8 (1, 28, 28).

    White ink on black (inverted when the border is light), the ink's bounding box scaled so its
    longer side is 20 pixels, pasted so the ink's centre of mass sits at the image centre.
    """
    grey = np.asarray(ImageOps.grayscale(image), dtype=np.float64)  # (H, W) in [0, 255]
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 127:
        grey = 255.0 - grey  # dark ink on light paper
    grey = grey - np.median(border if np.median(border) <= 127 else 255.0 - border)
    grey = np.clip(grey, 0, 255)
    ink = grey > max(30.0, 0.2 * grey.max(initial=0))
    if not ink.any():
        raise ImageError("the image is empty: no digit strokes were found")
    rows, columns = np.nonzero(ink)
    crop = grey[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    scale = MNIST_BOX / max(crop.shape)
    new_height = max(1, round(crop.shape[0] * scale))
    new_width = max(1, round(crop.shape[1] * scale))
    resized = Image.fromarray(crop.astype(np.uint8)).resize((new_width, new_height), Image.Resampling.LANCZOS)
    digit = np.asarray(resized, dtype=np.float64)
    total = digit.sum()
    centre_row = (digit.sum(axis=1) * np.arange(new_height)).sum() / total
    centre_column = (digit.sum(axis=0) * np.arange(new_width)).sum() / total
    top = int(round(MNIST_SIZE / 2 - 0.5 - centre_row))
    left = int(round(MNIST_SIZE / 2 - 0.5 - centre_column))
    top = min(max(top, 0), MNIST_SIZE - new_height)
    left = min(max(left, 0), MNIST_SIZE - new_width)
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float64)
    canvas[top : top + new_height, left : left + new_width] = digit
    scaled = canvas * (255.0 / max(canvas.max(), 1.0))  # full-contrast ink, like MNIST
    return torch.from_numpy(np.clip(scaled, 0, 255).round().astype(np.uint8)).unsqueeze(0)  # (1, 28, 28)


def find_face(source, name: str | None = None) -> FoundFace:
    """The largest face of a photo, aligned as the face models see it; `NoFaceError` names the photo when there is
    none. The result says how many faces the photo has, and where the chosen one is."""
    image = open_image(source, name=name)
    found = find_largest_face(np.asarray(image.convert("RGB")))
    if found is None:
        label = name or (str(source) if isinstance(source, (str, Path)) else "the image")
        raise NoFaceError(f"no face found in {label}")
    return found


def prepare_image(source, preprocessing: dict, name: str | None = None) -> torch.Tensor:
    """Decode `source` and bring it to the model's input form: uint8 (C, H, W).

    For a face model (`kind` "aligned_faces") that is the aligned chip of the photo's largest face.
    """
    if aligns_faces(preprocessing):
        return chip_to_tensor(find_face(source, name).chip)
    return image_to_tensor(open_image(source, name=name), preprocessing)


def chip_to_tensor(chip: np.ndarray) -> torch.Tensor:
    """An aligned face chip (150, 150, 3) uint8 as a face model's input, uint8 (3, 150, 150)."""
    return torch.from_numpy(chip.copy()).permute(2, 0, 1).contiguous()  # (3, 150, 150)
