"""What a user meets: which input is used, example domains, odd and blank images, zip galleries, the About panel."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import app
from demo.inputs import sketch_image
from demo.media import side_by_side
from siamese.data import examples as example_data
from siamese.evaluation.calibration import nearest_reference_distances, out_of_distribution_limit
from siamese.serving import OUT_OF_DISTRIBUTION_REFERENCES, prepare_usable_image
from siamese.serving.images import THUMBNAIL_SIZE


@pytest.fixture(scope="module")
def digit_paths(tmp_path_factory) -> dict[int, Path]:
    """One real digit per class, saved with a compression level the example files do not use."""
    digits = example_data.load_digits()
    folder = tmp_path_factory.mktemp("digits")
    paths = {}
    for digit in range(10):
        index = int(np.nonzero(digits.labels.numpy() == digit)[0][-1])
        paths[digit] = folder / f"{digit}_1.png"
        Image.fromarray(digits.images[index, 0].numpy()).save(paths[digit], compress_level=1)
    return paths


def shown(preview_file: str) -> np.ndarray:
    """A preview file's pixels, as the page shows them."""
    with Image.open(preview_file) as image:
        return np.asarray(image)


def drawing_of_a_one() -> dict:
    canvas = np.zeros((280, 280, 4), dtype=np.uint8)  # transparent, as the Sketchpad sends it
    canvas[60:220, 130:150] = (0, 0, 0, 255)
    return {"background": None, "layers": [], "composite": canvas}


def test_the_input_touched_last_is_the_one_compared(similarity_app, digit_paths):
    drawing, upload = drawing_of_a_one(), str(digit_paths[7])
    model = similarity_app.registry.get("mnist")
    drawn = prepare_usable_image(sketch_image(drawing), model.preprocessing, "drawing")
    uploaded = prepare_usable_image(upload, model.preprocessing, "upload")
    assert not torch.equal(drawn, uploaded)
    # A drawn A against the same drawing as B: distance 0 only if the drawings, not the uploads, were used.
    _, result, _, preview = similarity_app.compare_pair("mnist", drawing, upload, drawing, upload, "drawing", "drawing")
    preview = shown(preview)
    assert result["distance"] == pytest.approx(0.0, abs=1e-5)
    expected = side_by_side([drawn, drawn])
    np.testing.assert_array_equal(preview, expected)
    _, result, _, preview = similarity_app.compare_pair("mnist", drawing, upload, drawing, upload, "upload", "drawing")
    preview = shown(preview)
    np.testing.assert_array_equal(preview, side_by_side([uploaded, drawn]))
    # The chosen input is empty: a clear error, never a silent switch to the other input (an old example).
    with pytest.raises(gr.Error, match="Image A: the drawing is in use.*canvas is empty"):
        similarity_app.compare_pair("mnist", None, upload, drawing, None, "drawing", "drawing")
    with pytest.raises(gr.Error, match="Image B: the upload is in use, but no file"):
        similarity_app.compare_pair("mnist", drawing, upload, drawing, None, "drawing", "upload")
    # Nothing chosen yet (""/None, as the page starts): whichever input holds an image, the upload first.
    _, _, _, preview = similarity_app.compare_pair("mnist", None, upload, drawing, None, "", None)
    preview = shown(preview)
    np.testing.assert_array_equal(preview, side_by_side([uploaded, drawn]))


def test_choosing_an_input_says_which_one_is_used(similarity_app, digit_paths, tmp_path):
    choice, line = similarity_app.choose_drawing("image A")
    assert choice == "drawing" and "drawing" in line
    shown, choice, line = similarity_app.show_upload(str(digit_paths[3]), "image A")
    assert choice == "upload" and "3_1.png" in line and shown == str(digit_paths[3])
    pgm = tmp_path / "face.pgm"
    Image.fromarray(np.arange(64 * 48, dtype=np.uint32).reshape(64, 48).astype(np.uint8)).save(pgm)
    shown, choice, line = similarity_app.show_upload(str(pgm), "image B")
    assert Path(shown).suffix == ".png" and "face.pgm" in line
    np.testing.assert_array_equal(np.asarray(Image.open(shown)), np.asarray(Image.open(pgm)))
    with pytest.raises(gr.Error, match="not an image"):
        text = tmp_path / "notes.png"
        text.write_text("hello")
        similarity_app.show_upload(str(text), "image A")


def test_examples_of_another_domain_are_refused(similarity_app):
    digit_pair = example_data.pair_examples(example_data.load_digits())[0]
    with pytest.raises(gr.Error, match="digits examples, but model `faces`"):
        similarity_app.compare_pair("faces", None, digit_pair[0], None, digit_pair[1])
    _, result, _, _ = similarity_app.compare_pair("mnist", None, digit_pair[0], None, digit_pair[1])
    assert np.isfinite(result["distance"])
    with pytest.raises(gr.Error, match="trained on faces"):
        similarity_app.load_example_gallery("faces", "digits", 1)
    assert similarity_app.example_visibility("mnist") == (True, False)
    assert similarity_app.example_visibility("faces") == (False, True)


def test_an_input_far_from_the_examples_gets_the_calibrated_caution(similarity_app, digit_paths, tmp_path):
    model = similarity_app.registry.get("mnist")
    check = similarity_app.service.checks.get("mnist", model)
    # Recompute the rule independently: the same 500 examples, nearest-other distances, 99th percentile.
    examples = example_data.load_digits()
    chosen = example_data.balanced_indices(examples.labels, OUT_OF_DISTRIBUTION_REFERENCES)
    references = model.encode(examples.images[chosen])
    distances = np.linalg.norm(references.numpy()[:, None] - references.numpy()[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert check.limit == pytest.approx(np.quantile(distances.min(axis=1), 0.99), rel=1e-5)
    assert check.limit == pytest.approx(out_of_distribution_limit(references), rel=1e-6)
    # A checkerboard is no digit: the caution appears exactly when its nearest distance exceeds the limit.
    board = tmp_path / "board.png"
    Image.fromarray((np.indices((28, 28)).sum(axis=0) % 2 * 255).astype(np.uint8)).save(board)
    text, result, _, _ = similarity_app.compare_pair("mnist", None, str(board), None, str(digit_paths[1]))
    embeddings = torch.stack(
        [
            model.encode(prepare_usable_image(path, model.preprocessing, "x").unsqueeze(0))[0]
            for path in (str(board), str(digit_paths[1]))
        ]
    )
    beyond = nearest_reference_distances(embeddings, check.references) > check.limit
    assert ("image A looks unlike" in text) == bool(beyond[0])
    assert ("image B looks unlike" in text) == bool(beyond[1])
    assert result["out_of_distribution"] == bool(beyond.any())
    if beyond.any():
        assert "99%" in text and "left out in turn" in text


def save(image: Image.Image, path: Path) -> str:
    image.save(path)
    return str(path)


@pytest.mark.parametrize(
    ("kind", "message"),
    [("blank", "blank"), ("one pixel", "1x1 pixels"), ("1x5000", "1x5000 pixels"), ("5000x1", "5000x1 pixels")],
)
def test_blank_tiny_and_thin_images_are_clear_errors(similarity_app, digit_paths, tmp_path, kind, message):
    images = {
        "blank": Image.new("L", (64, 64), 200),
        "one pixel": Image.new("L", (1, 1), 0),
        "1x5000": Image.new("L", (1, 5000), 0),
        "5000x1": Image.new("L", (5000, 1), 0),
    }
    path = save(images[kind], tmp_path / "odd.png")
    for model_name in ("mnist", "faces"):
        with pytest.raises(gr.Error, match=message):
            similarity_app.compare_pair(model_name, None, path, None, str(digit_paths[1]))


def test_a_float_tiff_in_0_to_1_is_the_same_picture_as_its_8_bit_copy(similarity_app, digit_paths, tmp_path):
    pixels = np.asarray(Image.open(digit_paths[4]), dtype=np.float32) / 255.0  # (28, 28) in 0..1
    tiff = save(Image.fromarray(pixels, mode="F"), tmp_path / "float.tif")
    _, result, _, _ = similarity_app.compare_pair("mnist", None, tiff, None, str(digit_paths[4]))
    assert result["distance"] == pytest.approx(0.0, abs=1e-4)


def make_zip(path: Path, entries: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return str(path)


def png(digit_path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(digit_path).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_zip_of_class_folders_becomes_a_labelled_gallery(similarity_app, digit_paths, tmp_path):
    archive = make_zip(
        tmp_path / "gallery.zip",
        {
            "seven/a.png": png(digit_paths[7]),
            "seven/b.png": png(digit_paths[1]),
            "three/a.png": png(digit_paths[3]),
            "notes.txt": b"ignored",
            "__MACOSX/seven/._a.png": b"resource fork",
        },
    )
    state, summary, preview = similarity_app.build_gallery("mnist", [archive])
    assert sorted(state.labels) == ["seven", "seven", "three"]
    assert "3** images" in summary and "2** labels" in summary
    # Thumbnails are PNG files written once (never rewritten in place), whatever format the upload had.
    for path, _ in preview:
        assert Path(path).suffix == ".png"
        with Image.open(path) as image:
            assert image.format == "PNG" and max(image.size) <= THUMBNAIL_SIZE


def test_a_folder_of_class_folders_becomes_a_labelled_gallery(similarity_app, digit_paths, tmp_path):
    for label, digit in (("ones", 1), ("twos", 2), ("twos", 5)):
        (tmp_path / "people" / label).mkdir(parents=True, exist_ok=True)
        Image.open(digit_paths[digit]).save(tmp_path / "people" / label / f"{digit}.pgm")
    state, _, preview = similarity_app.build_gallery("mnist", [str(tmp_path / "people")])
    assert sorted(state.labels) == ["ones", "twos", "twos"]
    sizes = set()
    for path, _ in preview:
        with Image.open(path) as image:  # the PGM uploads come back as PNG, at their size
            sizes.add((image.format, image.size))
    assert sizes == {("PNG", (28, 28))}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/etc/evil.png", "absolute path"),
        ("../evil.png", "'..'"),
        ("a/../../evil.png", "'..'"),
        ("C:/x.png", "absolute"),
    ],
)
def test_zip_entries_that_escape_are_refused_and_nothing_is_written(
    similarity_app, digit_paths, tmp_path, name, message
):
    archive = make_zip(tmp_path / "bad.zip", {"ok/a.png": png(digit_paths[1]), name: png(digit_paths[2])})
    with pytest.raises(gr.Error, match=message):
        similarity_app.build_gallery("mnist", [archive])
    assert not (tmp_path / "evil.png").exists()


def test_zips_over_the_caps_are_refused(similarity_app, digit_paths, tmp_path, monkeypatch):
    from siamese.data import uploads

    many = make_zip(tmp_path / "many.zip", {f"c/{index}.png": png(digit_paths[1]) for index in range(5)})
    with pytest.raises(uploads.UploadError, match="holds 5 images"), uploads.expanded_uploads([many], max_files=4):
        pass
    big = make_zip(tmp_path / "big.zip", {"c/big.png": b"\0" * 4096})
    with pytest.raises(uploads.UploadError, match="unpacks to"), uploads.expanded_uploads([big], max_total_bytes=1000):
        pass
    with pytest.raises(gr.Error, match="not a readable zip"):
        similarity_app.build_gallery("mnist", [save_bytes(tmp_path / "fake.zip", b"not a zip")])


def save_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_an_empty_caption_names_its_position(similarity_app, digit_paths):
    files = [str(digit_paths[digit]) for digit in range(4)]
    with pytest.raises(gr.Error, match="label 2 is empty"):
        similarity_app.build_gallery("mnist", files, "a,,b,c")
    with pytest.raises(gr.Error, match="labels 2, 4 are empty"):
        similarity_app.build_gallery("mnist", files, "a,,b,")


def test_about_panel_has_readable_names_and_no_machine_paths(tmp_path):
    bundled = app.SimilarityApp([app.ModelSpec("mnist", str(app.BUNDLED_MODELS["mnist"]))])
    text = bundled.model_info("mnist")
    measured = json.loads((app.BUNDLED_MODELS["mnist"] / "metrics.json").read_text())["test"]["knn_accuracy"]
    assert f"kNN accuracy (k = 5) {measured:.2%}" in text  # the figure of metrics.json, named in words
    assert "knn_k" not in text and "precision_at_1" not in text
    assert "/" not in text.replace("/Hub", "")  # no path of any machine: not /work/..., not ../shared/data
    assert "bundled with the app" in text


def test_a_clicked_map_point_shows_its_image(similarity_app, digit_paths):
    similarity_app.embedding_map("mnist", 100, 10, [str(digit_paths[2])])
    image, caption = similarity_app.map_point("mnist", 100, 10, "reference:3")
    examples = example_data.load_digits()
    chosen = example_data.balanced_indices(examples.labels, 100)
    expected = examples.images[int(chosen[3]), 0].numpy()
    np.testing.assert_array_equal(image, expected)  # 28x28 fits the thumbnail unscaled
    assert caption.startswith(f"class {int(examples.labels[int(chosen[3])])}")
    image, caption = similarity_app.map_point("mnist", 100, 10, "yours:0", [str(digit_paths[2])])
    np.testing.assert_array_equal(image, np.asarray(Image.open(digit_paths[2])))
    assert caption == "2_1.png"
    assert similarity_app.map_point("mnist", 100, 10, "nonsense", None) == (None, "")
