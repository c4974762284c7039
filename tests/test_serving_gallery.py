"""siamese.serving's gallery rules without Gradio: labels, duplicates and conflicts, the embedding cache, and the
gallery threshold's fallback to the pair threshold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.data.uploads import UploadError
from siamese.evaluation.calibration import stored_gallery_threshold
from siamese.serving import (
    MAX_GALLERY_IMAGES,
    CollectedNotices,
    EmbeddingCache,
    GalleryError,
    GalleryImages,
    LabelledUploads,
    caption_labels,
    gallery_thresholds,
    pair_threshold,
)

PREPROCESSING = {"kind": "folder", "grayscale": True, "size": [16, 16]}


class CountingModel:
    """Embeds an image as its mean pixel (and one), counting the images it was asked to embed."""

    def __init__(self):
        self.embedded = 0

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.embedded += len(images)
        means = images.float().mean(dim=(1, 2, 3))  # (N,)
        return torch.stack([means, torch.ones_like(means)], dim=1)  # (N, 2)


def save_noise(path, seed: int) -> str:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 20), dtype=np.uint8)).save(path)
    return str(path)


def test_captions_give_one_label_per_image_or_say_which_is_missing():
    assert caption_labels("", 2) is None and caption_labels("  ", 2) is None
    assert caption_labels("zero, one", 2) == ["zero", "one"]
    assert caption_labels("a, b\nc d\n", 2) == ["a, b", "c d"]  # lines win over commas
    with pytest.raises(GalleryError, match="label 2 is empty"):
        caption_labels("a,,b,c", 4)
    with pytest.raises(GalleryError, match="labels 2, 4 are empty"):
        caption_labels("a,,b,", 4)
    with pytest.raises(GalleryError, match="got 1 label\\(s\\) for 2 image\\(s\\)"):
        caption_labels("zero", 2)


def labels_of(paths: list[str], captions: str | None = None) -> list[str]:
    with LabelledUploads.opened(paths, captions) as uploads:
        return uploads.labels


def test_uploads_are_labelled_by_caption_then_folder_then_file_name(tmp_path):
    files = [save_noise(tmp_path / "alice_1.png", 0), save_noise(tmp_path / "bob_2.png", 1)]
    assert labels_of(files) == ["alice", "bob"]
    assert labels_of(files, "x, y") == ["x", "y"]
    (tmp_path / "people" / "carol").mkdir(parents=True)
    save_noise(tmp_path / "people" / "carol" / "anything.png", 2)
    assert labels_of([str(tmp_path / "people")]) == ["carol"]


def test_empty_foreign_and_oversized_uploads_are_refused(tmp_path):
    with pytest.raises(GalleryError, match="The gallery is empty"):
        labels_of([])
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("no image")
    with pytest.raises(GalleryError, match="holds no image files"):
        labels_of([str(tmp_path / "texts")])
    image = save_noise(tmp_path / "a_1.png", 0)
    with pytest.raises(GalleryError, match=f"at most {MAX_GALLERY_IMAGES} images; {MAX_GALLERY_IMAGES + 1} were"):
        labels_of([image] * (MAX_GALLERY_IMAGES + 1))
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(UploadError, match="not a readable zip"):
        labels_of([str(tmp_path / "fake.zip")])


def test_duplicates_are_dropped_conflicts_kept_and_unusable_files_skipped(tmp_path):
    first, second = save_noise(tmp_path / "a.png", 0), save_noise(tmp_path / "b.png", 1)
    (tmp_path / "bad.png").write_text("not an image")
    uploads = LabelledUploads(
        [first, first, first, second, str(tmp_path / "bad.png")],
        ["x", "x", "y", "z", "w"],
        ["a.png", "a-again.png", "a-as-y.png", "b.png", "bad.png"],
    )
    notices = CollectedNotices()
    kept = GalleryImages.sort(uploads, PREPROCESSING, notices, picture=lambda image: image.size)
    assert kept.uploads.names == ["a.png", "a-as-y.png", "b.png"]
    assert kept.uploads.labels == ["x", "y", "z"] and kept.pictures == [(20, 20)] * 3
    assert [image.shape for image in kept.images] == [(1, 16, 16)] * 3
    assert torch.equal(kept.images[0], kept.images[1])
    skipped, duplicates, conflicts = notices.warnings
    assert skipped.startswith("Skipped 1 file(s) that are not usable images: bad.png")
    assert duplicates == "Dropped 1 duplicate image(s) that repeat an image with the same label."
    assert conflicts == "The same image carries different labels: a.png (x) and a-as-y.png (y). Both are kept."


def test_a_gallery_of_unusable_files_is_refused_after_saying_which_were_skipped(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    notices = CollectedNotices()
    with pytest.raises(GalleryError, match="None of the uploaded files is a usable image"):
        GalleryImages.sort(LabelledUploads([str(tmp_path / "bad.png")], ["a"], ["bad.png"]), PREPROCESSING, notices)
    assert notices.warnings[0].startswith("Skipped 1 file(s)")


def test_the_cache_embeds_each_image_once_per_model_and_evicts_the_oldest():
    images = [torch.full((1, 4, 4), value, dtype=torch.uint8) for value in range(5)]
    model, cache = CountingModel(), EmbeddingCache(capacity=4)
    expected = model.encode(torch.stack(images))  # (5, 2)
    model.embedded = 0
    assert torch.equal(cache.encode("m", model, images[:3]), expected[:3])
    assert (cache.last_embedded, model.embedded) == (3, 3)
    assert torch.equal(cache.encode("m", model, images[1:4]), expected[1:4])
    assert (cache.last_embedded, model.embedded) == (1, 4)  # only image 3 is new
    cache.encode("other", model, images[:1])  # another model's key: embedded again, the oldest (m, 0) evicted
    assert (cache.last_embedded, len(cache)) == (1, 4)
    cache.encode("m", model, images[:1])
    assert cache.last_embedded == 1


@pytest.mark.parametrize(
    ("calibration", "gallery", "pair"),
    [
        ({"threshold": 0.8, "gallery_threshold": 0.5, "caution_margin": 0.1}, 0.5, 0.8),
        ({"threshold": 0.8}, 0.8, 0.8),  # calibrated without validation galleries: the pair threshold
        ({}, None, None),
        (None, None, None),
    ],
)
def test_the_gallery_threshold_falls_back_to_the_pair_threshold(calibration, gallery, pair):
    model = SimpleNamespace(calibration=calibration)
    assert stored_gallery_threshold(calibration) == gallery
    assert gallery_thresholds(model) == (gallery, (calibration or {}).get("caution_margin"))
    assert pair_threshold(model) == pair
