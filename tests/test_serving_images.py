"""siamese.serving.images without Gradio: which images are usable, which input a slot uses, example domains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.data import examples as example_data
from siamese.data.datasets import DIGITS_PREPROCESSING
from siamese.data.images import ImageError, prepare_image
from siamese.serving import ImageSlot, InputError, check_example_domain, open_usable_image, prepare_usable_image
from siamese.serving.images import BLANK_CONTRAST, MIN_SIDE, thumbnail

FACES = {"kind": "faces", "grayscale": True, "size": [56, 46]}


def noise(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (Image.new("L", (64, 64), 200), "blank"),
        (Image.new("L", (1, 1), 0), "1x1 pixels"),
        (noise(5000, 1), "1x5000 pixels"),
        (noise(MIN_SIDE - 1, 40), f"40x{MIN_SIDE - 1} pixels"),
    ],
)
def test_blank_tiny_and_thin_images_are_refused_with_their_size_or_shade(image, message):
    with pytest.raises(ImageError, match=message):
        open_usable_image(image, "odd.png")


def test_the_usability_limits_are_inclusive():
    assert open_usable_image(noise(MIN_SIDE, MIN_SIDE), "small.png").size == (MIN_SIDE, MIN_SIDE)
    faint = np.full((20, 20), 100, dtype=np.uint8)
    faint[5:15, 5:15] = 100 + BLANK_CONTRAST  # exactly the least contrast that is not blank
    assert open_usable_image(faint, "faint.png").size == (20, 20)
    faint[5:15, 5:15] = 100 + BLANK_CONTRAST - 1
    with pytest.raises(ImageError, match="blank"):
        open_usable_image(faint, "flat.png")


def test_an_upload_the_server_has_removed_says_to_upload_it_again(tmp_path):
    with pytest.raises(ImageError, match="pair_a.png is no longer on the server.*upload it again"):
        open_usable_image(str(tmp_path / "0a1b" / "pair_a.png"), "pair_a.png")


@pytest.mark.parametrize("preprocessing", [DIGITS_PREPROCESSING, FACES])
def test_a_usable_image_is_prepared_exactly_as_prepare_image_does(preprocessing, tmp_path):
    path = tmp_path / "digit.png"
    digits = example_data.load_digits()
    Image.fromarray(digits.images[0, 0].numpy()).save(path)
    prepared = prepare_usable_image(str(path), preprocessing, "digit.png")
    assert prepared.dtype == torch.uint8
    assert torch.equal(prepared, prepare_image(str(path), preprocessing, "digit.png"))


def test_a_thumbnail_keeps_the_aspect_within_its_size():
    assert thumbnail(noise(200, 100), 50).shape == (50, 25)
    assert thumbnail(noise(20, 10), 50).shape == (20, 10)  # never scaled up


def test_a_slot_uses_the_input_touched_last_and_says_when_it_is_empty():
    drawing = noise(30, 30)
    both = ImageSlot(drawing, ["upload.png"], "A")
    assert ImageSlot(drawing, ["upload.png"], "A", "drawing").pick() == (drawing, "drawing A")
    assert ImageSlot(drawing, ["dir/upload.png"], "A", "upload").pick() == ("dir/upload.png", "upload.png")
    assert both.pick() == ("upload.png", "upload.png")  # no choice yet: the upload first
    assert ImageSlot(drawing, [], "A").pick() == (drawing, "drawing A")
    with pytest.raises(InputError, match="Image A: the drawing is in use.*canvas is empty"):
        ImageSlot(None, ["upload.png"], "A", "drawing").pick()
    with pytest.raises(InputError, match="Image B: the upload is in use, but no file"):
        ImageSlot(drawing, [], "B", "upload").pick()
    with pytest.raises(InputError, match="Image query is empty"):
        ImageSlot(None, [], "query").pick()


def test_examples_of_another_domain_are_refused_and_other_files_pass():
    class FacesModel:
        preprocessing = FACES

    digit_example = example_data.pair_examples(example_data.load_digits())[0][0]
    with pytest.raises(InputError, match="digits examples, but model `faces` was trained on faces"):
        check_example_domain("faces", FacesModel(), digit_example)
    check_example_domain("faces", FacesModel(), __file__)  # not an example: nothing to say
