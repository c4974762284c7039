"""Face chips aligned from 5 landmarks the way dlib's `get_face_chip` makes them, in numpy.

The steps follow dlib's `get_face_chip_details` and `extract_image_chip` (dlib/image_transforms/interpolation.h):

1. a least-squares similarity transform (Umeyama) from dlib's mean 5-point face, padded and scaled to the
   chip, onto the landmarks gives the chip's rotation and a square in the image;
2. while a halved square would still hold more pixels than the chip, the image (cropped around the square)
   is halved with dlib's 5-tap pyramid ([1 4 6 4 1] / 16 in integers, centred on even pixels), so that the
   bilinear sampling never shrinks by more than 2x and does not alias;
3. each chip pixel is sampled bilinearly (black outside the image) and truncated to uint8.

Following these integer and rounding details, the chips are bit-identical to dlib.get_face_chip's on the shared
test photos (the tests allow a mean difference of one grey level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Where dlib's 5 landmarks (in shape_predictor_5_face_landmarks order: outer then inner corner of the
# subject's left eye, outer then inner corner of the right eye, bottom of the nose) sit in an unpadded unit face
# box, (x, y); from dlib's get_face_chip_details.
FIVE_POINT_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass(frozen=True)
class ChipDetails:
    """A chip's place in the image: a square (left, top, right, bottom), rotated by `angle` radians about its centre."""

    rect: tuple[float, float, float, float]
    angle: float
    rows: int
    columns: int


@dataclass(frozen=True, eq=False)
class ChipTransform:
    """The affine map between chip pixels and image pixels, (x, y) = chip_to_image @ (column, row, 1)."""

    chip_to_image: np.ndarray  # (2, 3)

    @property
    def image_to_chip(self) -> np.ndarray:
        linear, offset = self.chip_to_image[:, :2], self.chip_to_image[:, 2]
        inverse = np.linalg.inv(linear)
        return np.hstack([inverse, (-inverse @ offset)[:, None]])  # (2, 3)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Chip (x, y) points (N, 2) in image coordinates (N, 2)."""
        points = np.asarray(points, dtype=np.float64)
        return points @ self.chip_to_image[:, :2].T + self.chip_to_image[:, 2]

    def to_chip(self, points: np.ndarray) -> np.ndarray:
        """Image (x, y) points (N, 2) in chip coordinates (N, 2), e.g. to draw landmarks on the chip."""
        points = np.asarray(points, dtype=np.float64)
        image_to_chip = self.image_to_chip
        return points @ image_to_chip[:, :2].T + image_to_chip[:, 2]


# ---------------------------------------------------------------------------------------------------------
# Geometry, on dlib's conventions: a rectangle (left, top, right, bottom) has inclusive edges, so its width
# is right - left + 1.


def _similarity_transform(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares scale*rotation (2, 2) and translation (2,) taking `source` points onto `target` (Umeyama)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    source_variance = (source_centred**2).sum(axis=1).mean()
    covariance = target_centred.T @ source_centred / len(source)  # (2, 2)
    u, singular, v_transposed = np.linalg.svd(covariance)
    signs = np.ones(2)
    determinant = np.linalg.det(covariance)
    # A reflection is the best fit only for mirrored points; force a proper rotation as Umeyama does.
    if determinant < 0 or (determinant == 0 and np.linalg.det(u) * np.linalg.det(v_transposed) < 0):
        signs[1 if singular[1] < singular[0] else 0] = -1
    rotation = u @ np.diag(signs) @ v_transposed
    scale = (singular * signs).sum() / source_variance if source_variance != 0 else 1.0
    linear = scale * rotation
    return linear, target_mean - linear @ source_mean


def face_chip_details(landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> ChipDetails:
    """Where the chip lies in the image for 5 landmarks (5, 2), as dlib's get_face_chip_details computes it."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"expected 5 (x, y) landmarks shaped (5, 2), got {landmarks.shape}")
    if size < 2 or padding < 0:
        raise ValueError(f"need size >= 2 and padding >= 0, got {size} and {padding}")
    template = (padding + FIVE_POINT_TEMPLATE) / (2 * padding + 1) * size  # (5, 2) chip pixels
    linear, offset = _similarity_transform(template, landmarks)
    first_column = linear[:, 0]
    angle = math.atan2(first_column[1], first_column[0])
    scale = math.hypot(first_column[0], first_column[1])
    centre = linear @ np.array([size / 2.0, size / 2.0]) + offset
    # A square of size*scale pixels about the centre; dlib's edges are inclusive, hence the - 1.
    half = (size * scale - 1) / 2
    rect = (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    return ChipDetails(tuple(float(value) for value in rect), angle, size, size)


def _area(rect) -> float:
    left, top, right, bottom = rect
    return 0.0 if left > right or top > bottom else (right - left + 1) * (bottom - top + 1)


def _rect_down(rect):
    """The rectangle's place one pyramid level down (dlib's pyramid_down<2>::rect_down)."""
    left, top, right, bottom = rect
    return (left / 2 - 1.25, top / 2 - 0.75, right / 2 - 1.25, bottom / 2 - 0.75)


def _rotated_corners(rect, angle: float) -> np.ndarray:
    """The rect's top-left, top-right, bottom-left and bottom-right corners rotated about its centre (4, 2)."""
    left, top, right, bottom = rect
    centre = np.array([(left + right) / 2, (top + bottom) / 2])
    corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]], dtype=np.float64)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    return (corners - centre) @ rotation.T + centre


def _chip_to_rect_transform(rect, angle: float, rows: int, columns: int) -> np.ndarray:
    """The affine (2, 3) taking chip corners (0, 0), (columns-1, 0), (0, rows-1) to the rotated rect's corners."""
    top_left, top_right, bottom_left, _ = _rotated_corners(rect, angle)
    return np.column_stack(
        [(top_right - top_left) / (columns - 1), (bottom_left - top_left) / (rows - 1), top_left]
    )  # (2, 3)


def _round_half_away(value: float) -> int:
    """C's lround: halves round away from zero."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def chip_transform(details: ChipDetails) -> ChipTransform:
    """The chip <-> image mapping of a chip (dlib's get_mapping_to_chip, inverted)."""
    return ChipTransform(_chip_to_rect_transform(details.rect, details.angle, details.rows, details.columns))


# ---------------------------------------------------------------------------------------------------------
# Sampling


def pyramid_down(image: np.ndarray) -> np.ndarray:
    """Halve an image (H, W, C) uint8 as dlib's pyramid_down<2>: output pixel (i, j) is centred on (2i+2, 2j+2)."""
    height, width = image.shape[:2]
    if height <= 8 or width <= 8:
        return np.zeros((0, 0, image.shape[2]), dtype=np.uint8)
    out_height, out_width = (height - 3) // 2, (width - 3) // 2
    pixels = image.astype(np.int32)
    weights = (1, 4, 6, 4, 1)
    # Integer sums as dlib does: the horizontal pass keeps the sum, the vertical pass divides by 256.
    rows = sum(w * pixels[:, k : k + 2 * out_width : 2] for k, w in enumerate(weights))  # (H, W', C)
    both = sum(w * rows[k : k + 2 * out_height : 2] for k, w in enumerate(weights))  # (H', W', C)
    return (both // 256).astype(np.uint8)


def _sample_bilinear(source: np.ndarray, transform: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Chip (rows, columns, C): each pixel sampled at transform @ (column, row, 1); black outside `source`."""
    column_grid, row_grid = np.meshgrid(np.arange(columns, dtype=np.float64), np.arange(rows, dtype=np.float64))
    x = transform[0, 0] * column_grid + transform[0, 1] * row_grid + transform[0, 2]  # (rows, columns)
    y = transform[1, 0] * column_grid + transform[1, 1] * row_grid + transform[1, 2]
    left, top = np.floor(x), np.floor(y)
    # Like dlib, a point needs all four neighbours inside the image.
    inside = (left >= 0) & (top >= 0) & (left + 1 < source.shape[1]) & (top + 1 < source.shape[0])
    chip = np.zeros((rows, columns, source.shape[2]), dtype=np.uint8)
    if not inside.any():
        return chip
    left_index, top_index = left[inside].astype(np.intp), top[inside].astype(np.intp)
    across = (x[inside] - left[inside])[:, None]  # (N, 1)
    down = (y[inside] - top[inside])[:, None]
    pixels = source.astype(np.float64)
    top_left, top_right = pixels[top_index, left_index], pixels[top_index, left_index + 1]  # (N, C)
    bottom_left, bottom_right = pixels[top_index + 1, left_index], pixels[top_index + 1, left_index + 1]
    value = (1 - down) * ((1 - across) * top_left + across * top_right) + down * (
        (1 - across) * bottom_left + across * bottom_right
    )
    chip[inside] = np.clip(np.trunc(value), 0, 255).astype(np.uint8)  # dlib casts, which truncates
    return chip


def _copy_chip(image: np.ndarray, rect) -> np.ndarray:
    """The unscaled, unrotated case: a plain copy of the (rounded) rectangle, black outside the image."""
    left, top, right, bottom = (_round_half_away(value) for value in rect)
    chip = np.zeros((bottom - top + 1, right - left + 1, image.shape[2]), dtype=np.uint8)
    source_top, source_left = max(top, 0), max(left, 0)
    source_bottom, source_right = min(bottom, image.shape[0] - 1), min(right, image.shape[1] - 1)
    if source_top <= source_bottom and source_left <= source_right:
        chip[source_top - top : source_bottom - top + 1, source_left - left : source_right - left + 1] = image[
            source_top : source_bottom + 1, source_left : source_right + 1
        ]
    return chip


def extract_chip(image: np.ndarray, details: ChipDetails) -> np.ndarray:
    """The chip (rows, columns, C) uint8 that dlib's extract_image_chip takes from `image` (H, W, C) or (H, W)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    grey = image.ndim == 2
    if grey:
        image = image[:, :, None]  # (H, W, 1): dlib's grey pipeline does the same arithmetic
    rect, angle, rows, columns = details.rect, details.angle, details.rows, details.columns
    if angle == 0 and rows == rect[3] - rect[1] + 1 and columns == rect[2] - rect[0] + 1:
        chip = _copy_chip(image, rect)
        return chip[:, :, 0] if grey else chip

    chip_area = rows * columns
    # How many pyramid levels it takes to bring the rect to about the chip's size, and the margin those
    # levels' filters need around it.
    depth, margin, smaller = 0, 2.0, _rect_down(rect)
    while _area(smaller) > chip_area:
        smaller = _rect_down(smaller)
        depth += 1
        margin = margin * 2 + 2
    corners = _rotated_corners(rect, angle)
    height, width = image.shape[:2]
    crop = (
        _round_half_away(max(corners[:, 0].min() - margin, 0)),
        _round_half_away(max(corners[:, 1].min() - margin, 0)),
        _round_half_away(min(corners[:, 0].max() + margin, width - 1)),
        _round_half_away(min(corners[:, 1].max() + margin, height - 1)),
    )
    if crop[2] < crop[0] or crop[3] < crop[1]:  # the chip lies wholly outside the image
        chip = np.zeros((rows, columns, image.shape[2]), dtype=np.uint8)
        return chip[:, :, 0] if grey else chip
    source = image[crop[1] : crop[3] + 1, crop[0] : crop[2] + 1]

    local = (rect[0] - crop[0], rect[1] - crop[1], rect[2] - crop[0], rect[3] - crop[1])
    while _area(_rect_down(local)) > chip_area:
        source = pyramid_down(source)
        local = _rect_down(local)
    if source.shape[0] == 0 or source.shape[1] == 0:
        chip = np.zeros((rows, columns, image.shape[2]), dtype=np.uint8)
    else:
        chip = _sample_bilinear(source, _chip_to_rect_transform(local, angle, rows, columns), rows, columns)
    return chip[:, :, 0] if grey else chip


def align_face(
    image_rgb: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> tuple[np.ndarray, ChipTransform]:
    """The aligned chip (size, size, 3) uint8 for 5 landmarks (5, 2) in an RGB image (H, W, 3), and its transform.

    The defaults make the 150x150 chip that dlib's face descriptor expects (dlib.get_face_chip(image, shape)).
    """
    details = face_chip_details(landmarks, size, padding)
    return extract_chip(image_rgb, details), chip_transform(details)
