"""SimilarityService without Gradio: pairs, galleries and the out-of-distribution caution over stand-in models."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.standin_models import make_standin
from siamese.data import examples as example_data
from siamese.data.images import ImageError
from siamese.evaluation.calibration import nearest_reference_distances
from siamese.serving import (
    CollectedNotices,
    GalleryError,
    ImageSlot,
    ModelChoiceError,
    ModelSpec,
    SimilarityService,
    prepare_usable_image,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> SimilarityService:
    folder = tmp_path_factory.mktemp("models")
    specs = [
        ModelSpec("mnist", str(make_standin(folder / "mnist", "digits"))),
        ModelSpec("faces", str(make_standin(folder / "faces", "faces"))),
    ]
    return SimilarityService(specs, notices=CollectedNotices())


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> dict[int, str]:
    """The first example digit of 0, 1 and 2 as `<digit>_1.png` (not the example files, which are domain-checked)."""
    digits, folder = example_data.load_digits(), tmp_path_factory.mktemp("digits")
    firsts = {int(label): position for position, label in reversed(list(enumerate(digits.labels.tolist())))}
    for digit in range(3):
        Image.fromarray(digits.images[firsts[digit], 0].numpy()).save(folder / f"{digit}_1.png")
    return {digit: str(folder / f"{digit}_1.png") for digit in range(3)}


def test_importing_the_serving_layer_imports_no_web_framework():
    probe = "import sys, siamese.serving; print('gradio' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert output.returncode == 0, output.stderr[-2000:]
    assert output.stdout.split()[-1] == "False"


def test_a_pair_is_the_distance_between_the_models_own_embeddings(service, digit_files):
    model = service.registry.get("mnist")
    slots = [ImageSlot(None, [digit_files[0]], "A"), ImageSlot(None, [digit_files[1]], "B")]
    comparison = service.compare_pair("mnist", slots)
    images = [prepare_usable_image(digit_files[digit], model.preprocessing, "x") for digit in (0, 1)]
    embeddings = model.encode(torch.stack(images))  # (2, D)
    assert all(torch.equal(seen, image) for seen, image in zip(comparison.images, images, strict=True))
    assert comparison.distance == pytest.approx(float(np.linalg.norm(embeddings[0] - embeddings[1])), rel=1e-5)
    threshold = model.calibration["threshold"]
    assert comparison.result["same"] is (comparison.distance <= threshold)
    assert comparison.result["similarity"] == pytest.approx(1 / (1 + (comparison.distance / threshold) ** 2))
    # The caution appears exactly for the sides beyond the model's out-of-distribution limit.
    check = service.checks.get("mnist", model)
    beyond = nearest_reference_distances(embeddings, check.references) > check.limit
    assert len(comparison.cautions) == int(beyond.sum())
    assert comparison.result["out_of_distribution"] is bool(beyond.any())


def test_user_mistakes_are_the_librarys_own_exceptions(service, digit_files, tmp_path):
    slots = [ImageSlot(None, [digit_files[0]], "A"), ImageSlot(None, [], "B")]
    with pytest.raises(ModelChoiceError, match="Pick a model first"):
        service.compare_pair(None, slots)
    with pytest.raises(ModelChoiceError, match="Unknown model 'nope'; the app offers mnist, faces"):
        service.compare_pair("nope", slots)
    with pytest.raises(ValueError, match="Image B is empty"):
        service.compare_pair("mnist", slots)
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    with pytest.raises(ImageError, match="blank"):
        service.compare_pair("mnist", [slots[0], ImageSlot(None, [str(blank)], "B")])
    with pytest.raises(GalleryError, match="Build a gallery first"):
        service.rank_query("mnist", None, slots[0])


def test_a_gallery_re_embeds_for_another_model_only_what_that_model_has_not_embedded(service, digit_files):
    files = [digit_files[0], digit_files[1], digit_files[2]]
    state = service.build_gallery("mnist", files)
    assert state.labels == ["0", "1", "2"] and service.embeddings.last_embedded == 3
    answer = service.rank_query("faces", state, ImageSlot(None, [digit_files[1]], "query"), top_k=2)
    assert answer.state.model_name == "faces" and len(answer.ranking.matches) == 2
    assert service.notices.infos[-1] == "Re-embedding the gallery with faces (it was built with mnist)."
    assert service.embeddings.last_embedded == 3
    again = service.build_gallery("mnist", files)
    assert service.embeddings.last_embedded == 0
    assert torch.equal(again.gallery.embeddings, state.gallery.embeddings)


def test_a_gallery_of_one_label_says_it_has_no_margin(service, digit_files):
    service.build_gallery("mnist", [digit_files[1]])
    assert "single label ('1')" in service.notices.warnings[-1]


@pytest.fixture
def temp_folder(tmp_path, monkeypatch) -> Path:
    """The temp folder the library extracts zips into, for this test alone (no other process writes there)."""
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def zip_of(path: Path, entries: dict[str, str | bytes]) -> str:
    """A .zip holding each entry: a file's contents (a path) or the bytes given."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data if isinstance(data, bytes) else Path(data).read_bytes())
    return str(path)


def test_a_zip_gallery_leaves_no_folder_behind_whether_embedding_succeeds_or_fails(
    service, digit_files, tmp_path, temp_folder, monkeypatch
):
    archive = zip_of(tmp_path / "people.zip", {"zero/a.png": digit_files[0], "one/b.png": digit_files[1]})
    state = service.build_gallery("mnist", [archive])
    assert sorted(state.labels) == ["one", "zero"] and list(temp_folder.iterdir()) == []
    unusable = zip_of(tmp_path / "texts.zip", {"zero/a.png": b"not an image"})
    with pytest.raises(GalleryError, match="None of the uploaded files is a usable image"):
        service.build_gallery("mnist", [unusable])
    assert list(temp_folder.iterdir()) == []
    seen = []

    def failing_encode(model_name, model, images):
        seen.extend(temp_folder.iterdir())  # the extraction, while its images are embedded
        raise RuntimeError("out of memory")

    monkeypatch.setattr(service.embeddings, "encode", failing_encode)
    with pytest.raises(RuntimeError, match="out of memory"):
        service.build_gallery("mnist", [archive])
    assert len(seen) == 1 and seen[0].name.startswith("siamese-zip-") and not seen[0].exists()
    assert list(temp_folder.iterdir()) == []


def test_a_zip_gallery_is_extracted_again_for_another_model_and_removed_again(
    service, digit_files, tmp_path, temp_folder
):
    archive = zip_of(tmp_path / "people.zip", {"zero/a.png": digit_files[0], "two/c.png": digit_files[2]})
    state = service.build_gallery("mnist", [archive])
    answer = service.rank_query("faces", state, ImageSlot(None, [digit_files[2]], "query"), top_k=2)
    assert answer.state.model_name == "faces" and sorted(answer.state.labels) == ["two", "zero"]
    assert list(temp_folder.iterdir()) == []


def test_a_gallery_whose_uploads_were_removed_says_so_instead_of_re_embedding(service, digit_files, tmp_path):
    copies = []
    for digit in (0, 1):
        copies.append(tmp_path / f"{digit}_1.png")
        copies[-1].write_bytes(Path(digit_files[digit]).read_bytes())
    state = service.build_gallery("mnist", [str(path) for path in copies])
    copies[0].unlink()  # as the server's upload cache does after a while
    with pytest.raises(GalleryError, match="no longer on the server.*pick `mnist` again, or build the gallery again"):
        service.rank_query("faces", state, ImageSlot(None, [digit_files[1]], "query"))
    assert len(service.rank_query("mnist", state, ImageSlot(None, [digit_files[1]], "query")).ranking.matches) == 2
