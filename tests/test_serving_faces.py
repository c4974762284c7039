"""Face models served without Gradio: the faces domain, the face used and the note about it, no-face messages, every
face of a group photo named against a gallery, photos with no face skipped in galleries, maps and example batches.

The rules are first checked with stand-ins (a fake face, a model that embeds a chip as its mean colour); the rest run
the bundled faces model (dlib's descriptor) and skip without dlib, and without ../shared for the real photos.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.data import examples as example_data
from siamese.data.images import NoFaceError
from siamese.faces.align import ChipTransform
from siamese.faces.detect import Face
from siamese.faces.pipeline import FoundFace
from siamese.search.gallery import Gallery
from siamese.serving import (
    CollectedNotices,
    GalleryError,
    ImageSlot,
    ModelSpec,
    PreparedInput,
    SimilarityService,
    is_face_model,
    model_kind,
    name_faces,
    no_face_message,
    used_face_note,
)
from siamese.serving.gallery import GalleryImages, LabelledUploads
from siamese.serving.maps import EmbeddingMaps
from siamese.serving.references import OutOfDistributionCheck

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_FACES = ROOT / "pretrained" / "faces"
EXAMPLE_FACES = ROOT / "demo" / "example_faces"


def fake_face(colour=(0, 0, 0), box=(10, 10, 59, 59), count: int = 1) -> FoundFace:
    """A found face whose chip is one flat colour."""
    chip = np.zeros((150, 150, 3), dtype=np.uint8)
    chip[:] = colour
    face = Face(box=box, landmarks=np.zeros((5, 2)), score=1.0)
    return FoundFace(chip, face, ChipTransform(np.eye(2, 3)), count)


class MeanColourModel:
    """Embeds each chip (F, 3, 150, 150) as its mean colour in [0, 1], (F, 3); counts its calls."""

    preprocessing = {"kind": "aligned_faces"}

    def __init__(self):
        self.calls = 0

    def encode(self, chips: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return chips.float().mean(dim=(2, 3)) / 255  # (F, 3)


def test_models_of_aligned_faces_are_of_the_faces_domain_and_only_they_find_faces():
    def model(kind):
        return SimpleNamespace(preprocessing={"kind": kind})

    assert model_kind(model("aligned_faces")) == "faces" and is_face_model(model("aligned_faces"))
    assert model_kind(model("faces")) == "faces" and not is_face_model(model("faces"))
    assert model_kind(model("digits")) == "digits" and not is_face_model(model("digits"))


def test_the_note_says_which_face_of_several_was_used_and_nothing_for_one():
    picture = Image.new("RGB", (64, 64))
    several = PreparedInput(torch.zeros(3, 150, 150), picture, "image A", [fake_face(count=3)])
    assert used_face_note(several) == "Image A has 3 faces; the largest (box drawn) was used."
    assert used_face_note(PreparedInput(torch.zeros(3, 150, 150), picture, "the query", [fake_face()])) is None
    assert used_face_note(PreparedInput(torch.zeros(1, 28, 28), picture, "image B")) is None


def test_the_no_face_message_names_the_image_and_its_file():
    assert no_face_message("image B", "noise.png").startswith("No face found in image B (noise.png):")
    assert no_face_message("image A", "drawing A").startswith("No face found in image A:")


def test_every_face_is_named_in_one_batch_in_order_and_a_stranger_is_no_match():
    gallery = Gallery(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), ["red", "blue"], ["red.png", "blue.png"])
    faces = [fake_face((250, 5, 5), count=3), fake_face((0, 0, 240), count=3), fake_face((0, 255, 0), count=3)]
    model = MeanColourModel()
    named = name_faces(model, faces, lambda embedding: gallery.rank(embedding, top_k=2, threshold=0.2))
    assert model.calls == 1
    assert [face.found for face in named] == faces
    assert [face.name for face in named] == ["red", "blue", None]
    # Independently: each face's nearest reference and its distance, from the colours themselves.
    for face, colour in zip(named, ([250, 5, 5], [0, 0, 240], [0, 255, 0]), strict=True):
        embedding = torch.tensor(colour, dtype=torch.float32) / 255
        distances = (gallery.embeddings - embedding).norm(dim=1)  # (2,)
        assert face.ranking.matches[0].distance == pytest.approx(float(distances.min()), abs=1e-6)
        assert face.name == (gallery.labels[int(distances.argmin())] if float(distances.min()) <= 0.2 else None)
    assert name_faces(model, [], lambda embedding: None) == []


def test_a_model_of_aligned_faces_gets_no_nearest_example_caution():
    examples = example_data.ExampleSet("faces", torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4), [], "")
    assert OutOfDistributionCheck.measure(MeanColourModel(), examples) is None


def test_without_a_face_folder_or_olivetti_the_examples_are_the_shipped_faces(tmp_path, monkeypatch):
    monkeypatch.delenv(example_data.FACES_ROOT_ENV, raising=False)
    monkeypatch.setattr(example_data, "cache_dir", lambda: tmp_path)  # no Olivetti cached there, and no download
    load = example_data.load_faces.__wrapped__  # the function itself, past its cache
    assert load(None, False) is None
    faces = load(None, False, str(EXAMPLE_FACES))
    assert len(faces) == 12 and faces.class_names == ["s31", "s32", "s36", "s37", "s38", "s39"]
    assert faces.images.shape[1:] == (1, 112, 92) and "example_faces" in faces.source
    assert sorted(faces.labels.tolist()) == sorted(list(range(6)) * 2)


def test_the_shipped_faces_are_credited_each_by_name():
    photos = sorted(EXAMPLE_FACES.glob("*/*.png"))
    credits = (EXAMPLE_FACES / "CREDITS.md").read_text()
    assert 0 < len(photos) <= 12 and all(path.stat().st_size < 20_000 for path in photos)
    assert "AT&T Laboratories Cambridge" in credits and "free for research use" in credits
    for path in photos:
        assert f"`{path.parent.name}/{path.name}`" in credits


# ----- with the bundled faces model (dlib's descriptor) -----


@pytest.fixture(scope="module")
def service() -> SimilarityService:
    pytest.importorskip("dlib")
    return SimilarityService([ModelSpec("faces", str(BUNDLED_FACES))], notices=CollectedNotices())


def example_face(person: str, number: int) -> str:
    return str(EXAMPLE_FACES / person / f"{number}.png")


def test_every_shipped_example_face_has_a_face_found(service):
    model = service.registry.get("faces")
    photos = sorted(str(path) for path in EXAMPLE_FACES.glob("*/*.png"))
    embeddings, kept = model.encode(photos, skip_no_face=True)
    assert kept == list(range(len(photos))) and embeddings.shape == (len(photos), 128)


def test_encode_refuses_a_photo_without_a_face_unless_asked_to_skip_it(service, noise_photo):
    model = service.registry.get("faces")
    photos = [str(noise_photo), example_face("s31", 8)]
    with pytest.raises(NoFaceError, match="no face found in .*noise.png"):
        model.encode(photos)
    embeddings, kept = model.encode(photos, skip_no_face=True)
    assert kept == [1] and torch.allclose(embeddings, model.encode(photos[1:]), atol=1e-5)
    assert model.encode([str(noise_photo)], skip_no_face=True)[0].shape == (0, 128)


def test_a_pair_with_a_faceless_photo_says_which_image_has_no_face(service, noise_photo):
    face = ImageSlot(None, [example_face("s31", 8)], "A")
    with pytest.raises(NoFaceError, match=r"^No face found in image B \(noise.png\)"):
        service.compare_pair("faces", [face, ImageSlot(None, [str(noise_photo)], "B")])
    with pytest.raises(NoFaceError, match=r"^No face found in image A \(noise.png\)"):
        service.compare_pair("faces", [ImageSlot(None, [str(noise_photo)], "A"), face])


def test_a_pair_of_one_face_each_has_the_face_used_and_no_note(service):
    slots = [ImageSlot(None, [example_face("s31", 8)], "A"), ImageSlot(None, [example_face("s31", 9)], "B")]
    comparison = service.compare_pair("faces", slots)
    assert comparison.result["same"] is True and comparison.notes == [] and comparison.cautions == []
    for prepared, image in zip(comparison.inputs, comparison.images, strict=True):
        assert len(prepared.faces) == 1 and prepared.faces[0].face_count == 1
        assert torch.equal(image, torch.from_numpy(prepared.faces[0].chip).permute(2, 0, 1))


def test_gallery_photos_without_a_face_are_named_and_skipped(service, noise_photo, tmp_path):
    model, notices = service.registry.get("faces"), CollectedNotices()
    paths = [example_face("s31", 8), str(noise_photo), example_face("s32", 3)]
    uploads = LabelledUploads(paths, ["s31", "noise", "s32"], ["8.png", "noise.png", "3.png"])
    kept = GalleryImages.sort(uploads, model.preprocessing, notices)
    assert kept.uploads.labels == ["s31", "s32"]
    assert notices.warnings == ["Skipped 1 photo(s) in which no face was found: noise.png"]
    with pytest.raises(GalleryError, match="No face was found in any of the uploaded photos"):
        GalleryImages.sort(LabelledUploads([str(noise_photo)], ["noise"], ["noise.png"]), model.preprocessing, notices)


def test_a_map_of_face_examples_leaves_out_the_photos_without_a_face(service, noise_photo):
    model = service.registry.get("faces")
    shipped = example_data.load_faces.__wrapped__(str(EXAMPLE_FACES), False)
    noise = torch.from_numpy(np.asarray(Image.open(noise_photo).convert("L").resize((92, 112))).copy())
    examples = example_data.ExampleSet(
        "faces",
        torch.cat([shipped.images, noise[None, None]]),  # (13, 1, 112, 92): the noise last
        torch.cat([shipped.labels, torch.tensor([0])]),
        shipped.class_names,
        "shipped faces and a noise photo",
    )
    maps = EmbeddingMaps()
    drawn = maps.draw(("faces", 20, 5.0), model, examples, [], [])
    assert len(drawn.embedding_map) == 12
    assert sorted(maps.sources[("faces", examples.source, 20, 5.0)].tolist()) == list(range(12))


def test_a_group_photo_query_names_every_face_and_a_stranger_is_no_match(service, real_faces_root):
    people = real_faces_root / "people"
    state = service.build_gallery("faces", [str(path) for path in sorted(people.glob("[ob]*/*.jpg"))])
    assert sorted(set(state.labels)) == ["biden", "obama"]
    query = ImageSlot(None, [str(real_faces_root / "scenes" / "obama_and_biden.jpg")], "query")
    answer = service.rank_query("faces", state, query, top_k=3)
    areas = [face.found.face.area for face in answer.faces]
    assert len(answer.faces) == 3 and areas == sorted(areas, reverse=True)
    assert sorted(face.name or "no match" for face in answer.faces) == ["biden", "no match", "obama"]
    assert answer.ranking is answer.faces[0].ranking and answer.query.picture.size == (2000, 1428)
    # Independently: each face's chip embedded alone, named by its nearest reference within the gallery threshold.
    model = service.registry.get("faces")
    for face in answer.faces:
        embedding = model.encode(torch.from_numpy(face.found.chip).permute(2, 0, 1)[None])[0]  # (D,)
        distances = (state.gallery.embeddings - embedding).norm(dim=1)  # (N,)
        nearest = state.gallery.labels[int(distances.argmin())]
        assert face.name == (nearest if float(distances.min()) <= answer.threshold else None)
