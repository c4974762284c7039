"""The app's handlers with the bundled faces model (dlib's descriptor) on photos: no face, several faces, a group
photo named against a gallery, faceless gallery photos, the shipped example faces offline, and the webcam input.

Needs dlib; the real colour photos come from ../shared/data/real_faces and the tests that use them skip without it.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from demo.examples import EXAMPLE_FACES_FOLDER, ExampleSets
from demo.faces import MATCH_COLOUR, STRANGER_COLOUR
from siamese.data import examples as example_data

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def faces_app() -> app.SimilarityApp:
    return app.SimilarityApp([app.ModelSpec("faces", str(app.BUNDLED_MODELS["faces"]))])


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def has_colour(picture: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((picture == np.array(colour, dtype=np.uint8)).all(axis=-1).any())


def test_a_photo_without_a_face_is_a_user_error_that_names_its_side(faces_app, noise_photo):
    face = str(EXAMPLE_FACES_FOLDER / "s31" / "8.png")
    with pytest.raises(gr.Error, match=r"No face found in image A \(noise.png\)") as raised:
        faces_app.compare_pair("faces", None, str(noise_photo), None, face)
    assert raised.value.print_exception is False  # a user error: shown in the page, not logged as a crash
    with pytest.raises(gr.Error, match=r"No face found in image B \(noise.png\)"):
        faces_app.compare_pair("faces", None, face, None, str(noise_photo))


def test_a_photo_with_several_faces_says_which_was_used_and_shows_its_box(faces_app, real_faces_root):
    group = real_faces_root / "scenes" / "obama_and_biden.jpg"
    single = real_faces_root / "people" / "biden" / "biden.jpg"
    verdict, result, _, preview = faces_app.compare_pair("faces", None, str(group), None, str(single))
    assert verdict.split("\n")[0] in ("## Same", "## Different") and result["threshold"] is not None
    assert "Image A has 3 faces; the largest (box drawn) was used." in verdict
    assert "image B has" not in verdict.lower()
    shown = pixels(preview)
    assert shown.shape[0] > 300 and has_colour(shown, MATCH_COLOUR)  # the photos with their boxes, above the chips


def test_a_group_photo_query_names_every_face_with_no_match_for_the_stranger(faces_app, real_faces_root):
    gallery = sorted(str(path) for path in (real_faces_root / "people").glob("[ob]*/*.jpg"))  # biden, obama
    state, summary, _ = faces_app.build_gallery("faces", gallery)
    assert "2** labels" in summary
    query = str(real_faces_root / "scenes" / "obama_and_biden.jpg")
    state, text, rows, matches, named = faces_app.rank_query_with_faces("faces", state, None, query, 3)
    heading, listing = text.split("\n")[0], text.split("\n\n")[0]
    assert sorted(heading.removeprefix("## ").split(", ")) == ["biden", "no match", "obama"]
    assert "The query has 3 faces" in listing and listing.count("no match") == 2  # the heading and face 3's line
    assert rows[0][1] == heading.removeprefix("## ").split(", ")[0] and len(matches) == len(rows) == 3
    picture = pixels(named)
    assert has_colour(picture, MATCH_COLOUR) and has_colour(picture, STRANGER_COLOUR)
    # The API's rank_query keeps its four outputs.
    assert len(faces_app.rank_query("faces", state, None, query, 3)) == 4


def test_a_query_photo_without_a_face_is_a_user_error(faces_app, noise_photo):
    photos = [str(EXAMPLE_FACES_FOLDER / "s31" / "8.png"), str(EXAMPLE_FACES_FOLDER / "s32" / "3.png")]
    state, _, _ = faces_app.build_gallery("faces", photos)
    with pytest.raises(gr.Error, match=r"No face found in the query \(noise.png\)"):
        faces_app.rank_query_with_faces("faces", state, None, str(noise_photo), 3)


def test_gallery_photos_without_a_face_are_named_and_skipped(faces_app, noise_photo, tmp_path):
    files = []
    for person, name in (("s31", "alice"), ("s32", "bob")):  # a file per person, labelled by its name
        files.append(tmp_path / f"{name}.png")
        files[-1].write_bytes(sorted((EXAMPLE_FACES_FOLDER / person).iterdir())[0].read_bytes())
    with pytest.warns(UserWarning, match="Skipped 1 photo\\(s\\) in which no face was found: noise.png"):
        state, summary, _ = faces_app.build_gallery("faces", [str(files[0]), str(noise_photo), str(files[1])])
    assert state.labels == ["alice", "bob"] and "2** images" in summary
    with pytest.raises(gr.Error, match="No face was found in any of the uploaded photos"):
        faces_app.build_gallery("faces", [str(noise_photo)])


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No face folder, no Olivetti faces cached and no download: a fresh clone without a network."""
    datasets = pytest.importorskip("sklearn.datasets")

    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.delenv(example_data.FACES_ROOT_ENV, raising=False)
    monkeypatch.setattr(example_data, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(datasets, "fetch_olivetti_faces", no_network)
    example_data.load_faces.cache_clear()
    yield
    example_data.load_faces.cache_clear()


def test_offline_the_shipped_example_faces_give_pairs_a_gallery_and_a_map(offline):
    faces_app = app.SimilarityApp([app.ModelSpec("faces", str(app.BUNDLED_MODELS["faces"]))])
    examples = ExampleSets.load(faces_app.service.references, False, True)
    assert examples.faces is not None and "example_faces" in examples.faces.source and len(examples.faces) == 12
    for first, second in example_data.pair_examples(examples.faces):
        same = Path(first).stem.rsplit("_", 1)[-1] == Path(second).stem.rsplit("_", 1)[-1]
        _, result, _, _ = faces_app.compare_pair("faces", None, first, None, second)
        assert result["same"] is same  # the shipped people are told apart at the model's threshold
    state, summary, _ = faces_app.load_example_gallery("faces", "faces", 1)
    assert "6** images" in summary and "6** labels" in summary
    for query in examples.face_queries:
        _, text, _, _ = faces_app.rank_query("faces", state, None, query, 3)
        assert text.startswith(f"## {Path(query).stem.rsplit('_', 1)[-1]}")
    figure, note = faces_app.embedding_map("faces", 100, 30)
    assert sum(len(trace.x) for trace in figure.data) == 12 and "12 images" in note


def test_the_upload_boxes_take_the_webcam_and_the_query_has_a_faces_picture():
    demo = app.build_demo([app.ModelSpec("faces", str(app.BUNDLED_MODELS["faces"]))])
    blocks = {getattr(block, "elem_id", None): block for block in demo.blocks.values()}
    for upload in ("pair_a_upload", "pair_b_upload", "query_upload"):
        assert "webcam" in blocks[upload].sources
    assert "rank_faces" in blocks
