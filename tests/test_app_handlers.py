"""The app's handlers called directly: results, verdicts, gallery ranking, and clear errors for bad input."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app  # noqa: E402
from demo.media import PREVIEW_IMAGES  # noqa: E402
from demo.plots import distance_figure, distance_plot  # noqa: E402
from siamese.data import examples as example_data  # noqa: E402
from siamese.serving import gallery_thresholds, prepare_usable_image  # noqa: E402


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> dict[str, list[Path]]:
    """Real digits written as files `<digit>_<n>.png`: three of each of 0, 1, 2."""
    digits = example_data.load_digits()
    folder = tmp_path_factory.mktemp("digits")
    files: dict[str, list[Path]] = {}
    for digit in range(3):
        members = np.nonzero(digits.labels.numpy() == digit)[0]
        for position, index in enumerate(members[:3]):
            path = folder / f"{digit}_{position + 1}.png"
            Image.fromarray(digits.images[index, 0].numpy()).save(path)
            files.setdefault(str(digit), []).append(path)
    return files


def shown(preview_file: str) -> np.ndarray:
    """A preview file's pixels, as the page shows them."""
    with Image.open(preview_file) as image:
        return np.asarray(image)


def write_bomb(path: Path, width: int = 60_000, height: int = 60_000) -> Path:
    """A tiny PNG whose header claims a huge image (3.6 gigapixels): a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat_data = zlib.compress(b"\x00" * 64)
    idat = struct.pack(">I", len(idat_data)) + b"IDAT" + idat_data + struct.pack(">I", zlib.crc32(b"IDAT" + idat_data))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + idat + iend)
    return path


def test_identical_images_are_the_same_with_distance_zero(similarity_app, digit_files):
    path = str(digit_files["1"][0])
    verdict, result, figure, preview_file = similarity_app.compare_pair("mnist", None, path, None, path)
    preview = shown(preview_file)
    assert result["distance"] == pytest.approx(0.0, abs=1e-5)
    assert result["same"] is True and result["similarity"] == pytest.approx(1.0)
    assert verdict.startswith("## Same")
    assert preview.ndim == 3 and preview.shape[2] == 3
    # The distance plot holds both distributions and marks the pair's distance.
    plotted = json.loads(figure.plot)  # gr.Plot's JSON, built from cached bars
    assert figure.type == "plotly"
    assert [trace["name"] for trace in plotted["data"]] == ["same class", "different class"]
    assert any(shape["x0"] == pytest.approx(result["distance"]) for shape in plotted["layout"]["shapes"])


@pytest.mark.parametrize("distance", [0.0, 0.3, 5.0])
@pytest.mark.parametrize("threshold", [None, 0.8])
def test_cached_distance_plot_is_the_figure_plotly_builds(distance, threshold):
    """The cached JSON path gives exactly the figure that plotly builds and validates from scratch."""
    calibration = {
        "threshold": threshold,
        "distance_histogram": {"edges": [0.0, 0.5, 1.0, 1.5], "genuine": [1.2, 0.6, 0.2], "impostor": [0.1, 0.5, 1.4]},
    }
    for _ in range(2):  # the second call reads the cache
        plotted = json.loads(distance_plot(calibration, distance).plot)
        assert plotted == json.loads(distance_figure(calibration, distance).to_json())
    without_calibration = json.loads(distance_plot(None, distance).plot)
    assert without_calibration == json.loads(distance_figure(None, distance).to_json())


@pytest.mark.parametrize("threshold_scale", [0.5, 2.0])
def test_verdict_follows_the_calibrated_threshold(similarity_app, digit_files, threshold_scale, monkeypatch):
    first, second = str(digit_files["0"][0]), str(digit_files["2"][0])
    _, result, _, _ = similarity_app.compare_pair("mnist", None, first, None, second)
    model = similarity_app.registry.get("mnist")
    threshold = result["distance"] * threshold_scale
    monkeypatch.setitem(model.calibration, "threshold", threshold)
    verdict, result, _, _ = similarity_app.compare_pair("mnist", None, first, None, second)
    assert result["threshold"] == pytest.approx(threshold)
    assert result["same"] is (threshold_scale > 1)
    assert result["similarity"] == pytest.approx(1 / (1 + (1 / threshold_scale) ** 2), rel=1e-4)
    assert verdict.startswith("## Same" if threshold_scale > 1 else "## Different")


def test_a_drawing_is_used_when_no_file_is_uploaded(similarity_app):
    canvas = np.zeros((280, 280, 4), dtype=np.uint8)  # transparent, as the Sketchpad sends it
    canvas[60:220, 130:150] = (0, 0, 0, 255)  # a black vertical stroke: a "1"
    drawing = {"background": None, "layers": [], "composite": canvas}
    _, result, _, preview_file = similarity_app.compare_pair("mnist", drawing, None, drawing, None)
    preview = shown(preview_file)
    assert result["distance"] == pytest.approx(0.0, abs=1e-5)
    assert preview.max() > 0


@pytest.mark.parametrize("side", ["A", "B"])
def test_empty_inputs_raise_a_clear_error(similarity_app, digit_files, side):
    path = str(digit_files["1"][0])
    empty_drawing = {"background": None, "layers": [], "composite": np.zeros((280, 280, 4), dtype=np.uint8)}
    filled, empty = (None, path), (empty_drawing, None)
    first, second = (empty, filled) if side == "A" else (filled, empty)
    with pytest.raises(gr.Error, match=f"Image {side} is empty"):
        similarity_app.compare_pair("mnist", *first, *second)


def bad_files(folder: Path) -> dict[str, Path]:
    text = folder / "notes.png"
    text.write_text("this is not an image")
    good = folder / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(good)
    truncated = folder / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {"non-image": text, "truncated": truncated, "bomb": write_bomb(folder / "bomb.png")}


@pytest.mark.parametrize("kind", ["non-image", "truncated", "bomb"])
def test_unreadable_files_raise_gr_error_not_a_traceback(similarity_app, digit_files, tmp_path, kind):
    bad = bad_files(tmp_path)[kind]
    with pytest.raises(gr.Error) as caught:
        similarity_app.compare_pair("mnist", None, str(bad), None, str(digit_files["1"][0]))
    assert caught.value.message and "Traceback" not in caught.value.message


def odd_images(folder: Path) -> dict[str, Path]:
    """Images in modes that must be converted, not refused."""
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque, so the result does not depend on what colour transparency becomes
    rgba[10:30, 18:22] = (255, 255, 255, 255)
    paths = {"rgba": folder / "rgba.png", "16bit": folder / "deep.png", "cmyk": folder / "cmyk.jpg"}
    Image.fromarray(rgba, mode="RGBA").save(paths["rgba"])
    deep = np.zeros((40, 40), dtype=np.uint16)
    deep[10:30, 18:22] = 60_000
    Image.fromarray(deep).save(paths["16bit"])
    Image.fromarray(rgba[..., :3]).convert("CMYK").save(paths["cmyk"])
    frames = [Image.fromarray((rgba[..., 0] * (step + 1) // 3).astype(np.uint8)) for step in range(3)]
    paths["gif"] = folder / "animated.gif"
    frames[0].save(paths["gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    return paths


@pytest.mark.parametrize("kind", ["rgba", "16bit", "cmyk", "gif"])
def test_unusual_image_modes_are_accepted(similarity_app, digit_files, tmp_path, kind):
    path = odd_images(tmp_path)[kind]
    _, result, _, _ = similarity_app.compare_pair("mnist", None, str(path), None, str(digit_files["1"][0]))
    assert np.isfinite(result["distance"])


def test_unknown_or_missing_model_is_a_clear_error(similarity_app, digit_files):
    path = str(digit_files["1"][0])
    with pytest.raises(gr.Error, match="Unknown model"):
        similarity_app.compare_pair("nope", None, path, None, path)
    with pytest.raises(gr.Error, match="Pick a model"):
        similarity_app.compare_pair(None, None, path, None, path)


def test_missing_bundled_model_becomes_a_note_not_a_crash(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    similarity_app = app.SimilarityApp([app.ModelSpec("broken", str(broken))], missing={"faces": tmp_path / "none"})
    assert similarity_app.registry.names == []
    notes = " ".join(similarity_app.registry.notes)
    assert "broken" in notes and "faces" in notes


def test_gallery_ranks_a_query_against_brute_force(similarity_app, digit_files):
    files = [str(path) for paths in digit_files.values() for path in paths[:2]]
    state, summary, preview = similarity_app.build_gallery("mnist", files)
    assert "6** images" in summary and "3** labels" in summary
    assert len(preview) == 6 and {caption for _, caption in preview} == {"0", "1", "2"}
    query = str(digit_files["1"][2])
    state, verdict, rows, matches = similarity_app.rank_query("mnist", state, None, query, 3)
    model = similarity_app.registry.get("mnist")
    embeddings = state.gallery.embeddings.numpy()
    query_embedding = model.encode(prepare_usable_image(query, model.preprocessing, "q").unsqueeze(0))[0].numpy()
    distances = np.linalg.norm(embeddings - query_embedding, axis=1)
    order = np.argsort(distances, kind="stable")[:3]
    assert [row[4] for row in rows] == [state.names[index] for index in order]
    np.testing.assert_allclose([row[2] for row in rows], distances[order].round(4), atol=2e-4)
    assert len(matches) == 3
    threshold, _ = gallery_thresholds(model)  # the gallery's own "no match" distance
    expected_head = "## No match" if distances[order[0]] > threshold else f"## {state.labels[order[0]]}"
    assert verdict.startswith(expected_head)


def test_gallery_thumbnails_removed_from_the_preview_store_are_written_again_when_shown(similarity_app, digit_files):
    """A session keeps its gallery for as long as it likes; the store may drop the thumbnails' files meanwhile."""
    files = [str(digit_files["0"][0]), str(digit_files["1"][0])]
    state, _, preview = similarity_app.build_gallery("mnist", files)
    contents = {path: Path(path).read_bytes() for path, _ in preview}
    for path in contents:
        Path(path).unlink()
    _, _, _, matches = similarity_app.rank_query("mnist", state, None, files[1], 2)
    assert {path for path, _ in matches} == set(contents)
    assert all(Path(path).read_bytes() == contents[path] for path, _ in matches)


def test_gallery_labels_can_come_from_captions(similarity_app, digit_files):
    files = [str(digit_files["0"][0]), str(digit_files["1"][0])]
    state, _, _ = similarity_app.build_gallery("mnist", files, "zero, one")
    assert state.labels == ["zero", "one"]
    with pytest.raises(gr.Error, match="one non-empty label per image"):
        similarity_app.build_gallery("mnist", files, "zero")


def test_bad_galleries_get_clear_errors_and_warnings(similarity_app, digit_files, tmp_path):
    with pytest.raises(gr.Error, match="gallery is empty"):
        similarity_app.build_gallery("mnist", [])
    with pytest.raises(gr.Error, match="Build a gallery first"):
        similarity_app.rank_query("mnist", None, None, str(digit_files["1"][0]), 5)
    with pytest.raises(gr.Error, match="at most 1000 images"):
        similarity_app.build_gallery("mnist", [str(digit_files["1"][0])] * 1001)
    bad = bad_files(tmp_path)
    with pytest.raises(gr.Error, match="None of the uploaded files"):
        similarity_app.build_gallery("mnist", [str(path) for path in bad.values()])
    with pytest.warns(UserWarning, match="single label"):
        state, _, _ = similarity_app.build_gallery("mnist", [str(path) for path in digit_files["1"]])
    _, verdict, _, _ = similarity_app.rank_query("mnist", state, None, str(digit_files["1"][0]), 5)
    assert "no margin" in verdict or "No match" in verdict
    duplicate = [str(digit_files["0"][0]), str(digit_files["0"][0]), str(digit_files["1"][0])]
    with pytest.warns(UserWarning, match="duplicate"):
        state, _, _ = similarity_app.build_gallery("mnist", duplicate)
    assert len(state.gallery) == 2
    with pytest.warns(UserWarning, match="Skipped 1 file"):
        state, _, _ = similarity_app.build_gallery("mnist", [str(bad["truncated"])] + duplicate[1:])
    assert len(state.gallery) == 2


def test_a_1000_image_example_gallery_is_embedded_once(similarity_app, digit_files):
    state, summary, preview = similarity_app.load_example_gallery("mnist", "digits", 100)
    assert len(state.gallery) == 1000 and len(preview) == PREVIEW_IMAGES
    embeddings = state.gallery.embeddings
    returned, _, _, _ = similarity_app.rank_query("mnist", state, None, str(digit_files["2"][0]), 5)
    assert returned is state and returned.gallery.embeddings is embeddings


def test_switching_model_re_embeds_the_gallery(similarity_app, digit_files, tmp_path):
    state, _, _ = similarity_app.build_gallery("mnist", [str(digit_files["0"][0]), str(digit_files["1"][0])])
    query = tmp_path / "noise.png"  # not a digit example, which a faces model refuses
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (56, 46), dtype=np.uint8)).save(query)
    new_state, _, rows, _ = similarity_app.rank_query("faces", state, None, str(query), 2)
    assert new_state.model_name == "faces" and len(rows) == 2


def test_map_places_user_images_and_is_cached(similarity_app, digit_files):
    files = [str(digit_files["0"][0]), str(digit_files["2"][0])]
    figure, note = similarity_app.embedding_map("mnist", 200, 20, files)
    assert figure.data[-1].name == "your images" and len(figure.data[-1].x) == 2
    assert "inverse-distance-weighted" in note
    maps = similarity_app.service.maps.cache
    computations = maps.computations
    _, note = similarity_app.embedding_map("mnist", 200, 20, None)
    assert maps.computations == computations and "cache" in note


def test_model_info_shows_data_and_threshold(similarity_app):
    text = similarity_app.model_info("mnist")
    assert "stand-in" in text and "threshold" in text
