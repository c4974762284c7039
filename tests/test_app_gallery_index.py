"""The app's gallery at scale: saved gallery files from `siamese embed`, and re-embedding only what it must."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

import app
from demo.examples import EXAMPLE_FACES_FOLDER
from siamese import cli
from siamese.data import examples as example_data
from siamese.serving import MAX_GALLERY_IMAGES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundled_app() -> app.SimilarityApp:
    specs = [app.ModelSpec(name, str(folder)) for name, folder in app.BUNDLED_MODELS.items()]
    return app.SimilarityApp(specs)


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    """Real digits, 1,200 files in class folders: more than the 1,000 images an uploaded gallery may hold."""
    digits = example_data.load_digits()
    folder = tmp_path_factory.mktemp("digits")
    for index in range(0, 4800, 4):  # the digits are sorted by class: every 4th covers all ten
        label = int(digits.labels[index])
        (folder / str(label)).mkdir(exist_ok=True)
        Image.fromarray(digits.images[index, 0].numpy()).save(folder / str(label) / f"{index}.png")
    return folder


def test_a_saved_gallery_over_the_upload_cap_ranks_queries_with_the_calibrated_verdict(
    bundled_app, digit_folder, tmp_path
):
    gallery_file = tmp_path / "digits.safetensors"
    cli.embed_folder(digit_folder, str(ROOT / "pretrained" / "mnist"), gallery_file, progress=False)
    state, summary, preview = bundled_app.load_saved_gallery("mnist", str(gallery_file))
    assert "**1,200** embeddings" in summary and len(state.index) == 1200 > MAX_GALLERY_IMAGES
    query = next((digit_folder / "7").iterdir())
    _, verdict, rows, _ = bundled_app.rank_query("mnist", state, None, str(query), 5)
    assert rows[0][1] == "7" and rows[0][2] < 1e-2  # the query itself is in the gallery
    assert verdict.startswith("## 7")
    with pytest.raises(gr.Error, match="holds no images to re-embed"):
        bundled_app.rank_query("faces", state, None, str(query), 5)


def test_a_gallery_from_another_model_or_a_broken_file_is_refused(bundled_app, digit_folder, tmp_path):
    """The faces model makes 128-d embeddings since it is dlib's descriptor (160-d for the AT&T convnet before)."""
    gallery_file = tmp_path / "digits.safetensors"
    cli.embed_folder(digit_folder / "3", str(ROOT / "pretrained" / "mnist"), gallery_file, progress=False)
    with pytest.raises(gr.Error, match="64-d embeddings .* 128-d"):
        bundled_app.load_saved_gallery("faces", str(gallery_file))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(gallery_file.read_bytes()[:64])
    with pytest.raises(gr.Error, match="damaged"):
        bundled_app.load_saved_gallery("mnist", str(broken))
    with pytest.raises(gr.Error, match="Upload a gallery file"):
        bundled_app.load_saved_gallery("mnist", None)


def test_switching_models_re_embeds_only_images_that_model_has_not_embedded(bundled_app, tmp_path):
    """Six of the app's example faces: the faces model (dlib's descriptor) embeds only photos where it finds a face,
    so the random-noise "faces" the AT&T convnet took before would leave its gallery empty."""
    pytest.importorskip("dlib")
    files = []
    for index, photo in enumerate(sorted(EXAMPLE_FACES_FOLDER.glob("s3[126]/*.png"))):
        path = tmp_path / f"person{index // 2}_{index}.png"
        path.write_bytes(photo.read_bytes())
        files.append(str(path))
    assert len(files) == 6
    state, _, _ = bundled_app.build_gallery("faces", files)
    assert bundled_app.service.embeddings.last_embedded == 6
    query = files[0]
    bundled_app.rank_query("mnist", state, None, query, 3)  # switch: every image is new to this model
    assert bundled_app.service.embeddings.last_embedded == 6
    state, _, _ = bundled_app.build_gallery("faces", files)  # back: all six come from the cache
    assert bundled_app.service.embeddings.last_embedded == 0
