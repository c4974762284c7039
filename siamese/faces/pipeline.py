"""A photo in, aligned face chips out: detection, the largest face first, and dlib's 150x150 alignment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .align import ChipTransform, align_face
from .detect import Face, detect_faces

# dlib's HOG window is 80 pixels wide, so in a photo this small (an AT&T portrait is 92x112) most faces are only
# found when the search doubles the image twice; that costs about 20 ms here, against 5 ms.
SMALL_PHOTO_SIDE = 400
# The detector's cost grows with the pixels it searches. One face per photo (a pair, a gallery photo) is searched
# on a copy of at most 800 pixels a side (130 ms a photo here, against 280 ms at 1280), which finds faces down to
# about 5% of the photo's longer side, and again at 1600 when none is found there; a group photo is searched at
# 1600 pixels at once, for its smaller faces. Every face of the shared test photos is found at 640.
PORTRAIT_SEARCH_SIDE = 800
GROUP_SEARCH_SIDE = 1600


def _faces(image_rgb: np.ndarray, search_side: int) -> list[Face]:
    upsample = 2 if max(image_rgb.shape[:2]) <= SMALL_PHOTO_SIDE else 1
    return detect_faces(image_rgb, upsample=upsample, detection_max_side=search_side)


@dataclass(frozen=True, eq=False)
class FoundFace:
    """One face of a photo: its aligned chip (150, 150, 3) uint8, where it was, and how many faces the photo has."""

    chip: np.ndarray
    face: Face
    transform: ChipTransform
    face_count: int


def find_faces(image_rgb: np.ndarray) -> list[FoundFace]:
    """Every face in an RGB uint8 photo (H, W, 3), aligned, largest first; [] when there is none."""
    faces = _faces(image_rgb, GROUP_SEARCH_SIDE)
    found = []
    for face in faces:
        chip, transform = align_face(image_rgb, face.landmarks)
        found.append(FoundFace(chip, face, transform, len(faces)))
    return found


def find_largest_face(image_rgb: np.ndarray) -> FoundFace | None:
    """The largest face of a photo, aligned (only that one is aligned), or None when no face is found.

    A photo with several faces is searched again as a group photo, so that the face called the largest is the one
    `find_faces` puts first: faces of about one size can swap places between search sizes.
    """
    faces = _faces(image_rgb, PORTRAIT_SEARCH_SIDE)
    if len(faces) != 1 and max(image_rgb.shape[:2]) > PORTRAIT_SEARCH_SIDE:
        faces = _faces(image_rgb, GROUP_SEARCH_SIDE)
    if not faces:
        return None
    chip, transform = align_face(image_rgb, faces[0].landmarks)
    return FoundFace(chip, faces[0], transform, len(faces))
