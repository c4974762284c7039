"""Which images a served model is asked about: usable ones, from the input in use, of the model's own domain; for a
face model, the face (or every face) found in each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from siamese.data import examples as example_data
from siamese.data.images import ImageError, NoFaceError, aligns_faces, chip_to_tensor, open_image, prepare_image
from siamese.faces.pipeline import FoundFace, find_faces, find_largest_face
from siamese.serving.messages import InputError

# Smaller sides or flatter images carry nothing to compare: a clear error, not a meaningless verdict.
MIN_SIDE = 8
BLANK_CONTRAST = 8
THUMBNAIL_SIZE = 96


def open_usable_image(source, name: str) -> Image.Image:
    """Decode an image and refuse the ones nothing can be learned from: too small, too thin, or one flat colour."""
    if isinstance(source, str | Path) and not Path(source).exists():
        # A page left open outlives its uploads: the server removes them after a while (DiskLimits.cache_max_age).
        raise ImageError(f"{name} is no longer on the server (uploads are kept for a while only): upload it again")
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


@dataclass(frozen=True, eq=False)
class PreparedInput:
    """One input as the model takes it (`image`, uint8 (C, H, W)), the decoded picture it came from, the words the
    page calls it by ("image A"), and for a face model the faces it used (`faces`, largest first; [] otherwise)."""

    image: torch.Tensor
    picture: Image.Image
    label: str
    faces: list[FoundFace] = field(default_factory=list)


def is_face_model(model) -> bool:
    """Whether the model sees aligned face chips, so its inputs go through the face step."""
    return aligns_faces(model.preprocessing)


def no_face_message(label: str, name: str) -> str:
    """What the page says when a face model finds no face in an input."""
    shown = label if name == label or name.startswith("drawing") else f"{label} ({name})"
    return (
        f"No face found in {shown}: a face model needs a photo showing a face from the front, not too small and "
        "not turned away. Try another photo."
    )


def prepare_usable_input(source, preprocessing: dict, name: str, label: str, every_face: bool = False):
    """A usable image in the model's input form, with the picture it came from: a PreparedInput. For a face model,
    the largest face (every face with `every_face`, the largest first); a NoFaceError naming `label` when none is
    found, an ImageError saying what else is wrong."""
    picture = open_usable_image(source, name)
    if not aligns_faces(preprocessing):
        return PreparedInput(prepare_image(picture, preprocessing, name), picture, label)
    photo = np.asarray(picture.convert("RGB"))  # (H, W, 3)
    if every_face:
        faces = find_faces(photo)
    else:
        largest = find_largest_face(photo)
        faces = [] if largest is None else [largest]
    if not faces:
        raise NoFaceError(no_face_message(label, name))
    return PreparedInput(chip_to_tensor(faces[0].chip), picture, label, faces)


def prepare_usable_image(source, preprocessing: dict, name: str) -> torch.Tensor:
    """A usable image (path, PIL or array) in the model's input form, uint8 (C, H, W); an ImageError says why not."""
    return prepare_usable_input(source, preprocessing, name, name).image


def thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """A small copy of a decoded image as a uint8 array, (h, w) or (h, w, 3)."""
    small = image.copy()
    small.thumbnail((size, size))
    return np.asarray(small)


def model_kind(model) -> str:
    """The model's domain as its preprocessing declares it: "digits", "faces" (face models of any kind) or
    "folder"."""
    return "faces" if is_face_model(model) else str((model.preprocessing or {}).get("kind", "folder"))


def check_example_domain(model_name: str, model, path: str) -> None:
    """An InputError when `path` is a built-in example of another domain than the model's."""
    example_kind = example_data.example_kind(path)
    if example_kind is not None and example_kind != model_kind(model):
        raise InputError(
            f"This example is from the {example_kind} examples, but model `{model_name}` was trained on "
            f"{model_kind(model)}: pick a {example_kind} model, or an example for {model_kind(model)}."
        )


@dataclass(frozen=True)
class ImageSlot:
    """One image input: a drawing (None when the canvas is empty), uploaded files, and which of the two the user
    touched last (`choice`: "drawing", "upload", or None before either was touched)."""

    drawing: Image.Image | None
    uploads: list[str] = field(default_factory=list)
    side: str = "query"
    choice: str | None = None

    def pick(self) -> tuple[Image.Image | str, str]:
        """The image in use and its name: the input touched last, and an InputError when that input is empty
        (never a silent switch to the other one, which may hold an old example). With no choice yet, whichever
        holds an image (the upload first)."""
        if self.choice == "drawing":
            if self.drawing is None:
                raise InputError(
                    f"Image {self.side}: the drawing is in use (you touched it last), but the canvas is empty. Draw "
                    f"on it, or upload a file to use that instead."
                )
            return self.drawing, f"drawing {self.side}"
        if self.choice == "upload":
            if not self.uploads:
                raise InputError(
                    f"Image {self.side}: the upload is in use, but no file is uploaded. Upload one, or draw."
                )
            return self.uploads[0], Path(self.uploads[0]).name
        if self.uploads:
            return self.uploads[0], Path(self.uploads[0]).name
        if self.drawing is not None:
            return self.drawing, f"drawing {self.side}"
        raise InputError(f"Image {self.side} is empty: draw on the canvas or upload an image file.")

    @property
    def label(self) -> str:
        """What the page calls this input: "image A", "image B", "the query"."""
        return "the query" if self.side == "query" else f"image {self.side}"

    def prepare(self, model_name: str, model) -> torch.Tensor:
        """The picked image in the model's input form, uint8 (C, H, W); an example file must fit the model's domain."""
        return self.prepare_input(model_name, model).image

    def prepare_input(self, model_name: str, model, every_face: bool = False, check_domain: bool = True):
        """The picked image as a PreparedInput (see prepare_usable_input); an example file must fit the model's
        domain unless `check_domain` is False."""
        source, name = self.pick()
        if check_domain and isinstance(source, str):
            check_example_domain(model_name, model, source)
        return prepare_usable_input(source, model.preprocessing, name, self.label, every_face)
