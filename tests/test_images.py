"""Image decoding for training folders and uploads: every bad input is a clear ImageError."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.data.images import MAX_PIXELS, ImageError, digit_to_mnist, open_image, prepare_image

FACES = {"kind": "faces", "grayscale": True, "size": [20, 16]}
COLOUR = {"kind": "folder", "grayscale": False, "size": [10, 12]}


def png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=options.pop("format", "PNG"), **options)
    return buffer.getvalue()


def test_modes_are_converted(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red: white after compositing
    assert open_image(png_bytes(rgba)).getpixel((0, 0)) == (255, 255, 255)
    sixteen = Image.fromarray(np.full((6, 6), 65535, dtype=np.uint16))
    assert np.asarray(open_image(png_bytes(sixteen))).max() == 255
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))
    assert open_image(png_bytes(cmyk, format="JPEG")).mode == "RGB"
    palette = Image.new("P", (8, 8))
    assert open_image(png_bytes(palette)).mode in ("RGB", "L")
    frames = [Image.new("L", (8, 8), value) for value in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(open_image(buffer.getvalue()).convert("L")).mean() == pytest.approx(10, abs=2)


def test_tensor_shape_follows_the_preprocessing():
    image = Image.new("RGB", (40, 30), (10, 20, 30))
    grey = prepare_image(png_bytes(image), FACES)
    colour = prepare_image(png_bytes(image), COLOUR)
    assert grey.shape == (1, 20, 16) and grey.dtype == torch.uint8
    assert colour.shape == (3, 10, 12) and colour[2].float().mean() == pytest.approx(30, abs=1)


def test_bad_inputs_name_the_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="notes.png: not an image"):
        open_image(text)
    truncated = tmp_path / "cut.png"
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    truncated.write_bytes(png_bytes(noise)[:300])
    with pytest.raises(ImageError, match="cut.png: the image is damaged or truncated"):
        open_image(truncated)
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="no image"):
        open_image(None)


def test_decompression_bomb_is_refused():
    side = int(MAX_PIXELS**0.5) + 100  # just over the limit: PIL would only warn here
    bomb = png_bytes(Image.new("1", (side, side)))
    with pytest.raises(ImageError, match="too large"):
        open_image(bomb, name="bomb.png")


def stroke(size: int = 200, dark_on_light: bool = True) -> Image.Image:
    canvas = np.full((size, size), 255 if dark_on_light else 0, dtype=np.uint8)
    canvas[40:160, 60:80] = 0 if dark_on_light else 255  # a tall bar, off centre: a "1"
    return Image.fromarray(canvas)


def test_digit_is_inverted_boxed_and_centred_by_mass():
    digit = digit_to_mnist(stroke())[0].float()  # (28, 28)
    assert digit.shape == (28, 28)
    assert digit[0].max() == 0 and digit.max() == 255  # black background, white ink
    rows, columns = torch.nonzero(digit > 30, as_tuple=True)
    assert rows.max() - rows.min() + 1 == 20  # the longer side fills the 20-pixel box
    total = digit.sum()
    centre_row = (digit.sum(dim=1) * torch.arange(28)).sum() / total
    centre_column = (digit.sum(dim=0) * torch.arange(28)).sum() / total
    assert abs(centre_row - 13.5) <= 1.0 and abs(centre_column - 13.5) <= 1.0
    same = digit_to_mnist(stroke(dark_on_light=False))[0].float()
    assert (same - digit).abs().mean() < 2  # polarity does not matter


def test_an_mnist_style_digit_comes_back_nearly_unchanged():
    once = digit_to_mnist(stroke())
    twice = digit_to_mnist(Image.fromarray(once[0].numpy()))
    assert (once.float() - twice.float()).abs().mean() < 6


def test_an_empty_drawing_is_a_clear_error():
    with pytest.raises(ImageError, match="empty"):
        digit_to_mnist(Image.new("L", (50, 50), 255))


def test_a_float_tiff_in_0_to_1_is_scaled_not_black(tmp_path):
    values = np.zeros((12, 10), dtype=np.float32)
    values[3:9, 4:6] = 1.0
    values[0, 0] = 0.5
    path = tmp_path / "float.tif"
    Image.fromarray(values, mode="F").save(path)
    assert Image.open(path).mode == "F"
    decoded = np.asarray(open_image(path))
    expected = np.round(values.astype(np.float64) * 255).astype(np.uint8)  # what 0..1 floats mean in 8 bits
    np.testing.assert_array_equal(decoded, expected)
    wide = Image.fromarray(values * 200, mode="F")  # a float image already in 0..255 stays as it is
    np.testing.assert_array_equal(np.asarray(open_image(wide)), np.round(values * 200).astype(np.uint8))


# EXIF orientation 6 means "turn 90 degrees clockwise to show", so a phone stores the pixels turned the other way
# (PIL's ROTATE_90 is anticlockwise); 8 is the opposite.
@pytest.mark.parametrize("orientation, stored_turn", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_an_exif_orientation_turns_the_image_as_viewers_show_it(tmp_path, orientation, stored_turn):
    rng = np.random.default_rng(orientation)
    upright = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))  # (H, W) = (40, 30)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.png"
    upright.transpose(stored_turn).save(path, exif=exif)
    opened = open_image(path)
    assert np.array_equal(np.asarray(opened), np.asarray(upright))
    # A PIL image the caller opened goes the same way, and turning twice changes nothing.
    with Image.open(path) as raw:
        assert np.array_equal(np.asarray(open_image(raw)), np.asarray(upright))
    assert np.array_equal(np.asarray(open_image(opened)), np.asarray(upright))
