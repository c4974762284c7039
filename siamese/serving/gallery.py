"""One-shot galleries as a server builds them: which uploads become references and under which labels,
duplicates and conflicting labels, and the session's gallery between queries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from siamese.data.images import ImageError, NoFaceError, prepare_image
from siamese.data.uploads import expanded_uploads
from siamese.search.gallery import Gallery, label_from_filename
from siamese.search.index import GalleryIndex
from siamese.serving.cache import image_digest
from siamese.serving.images import open_usable_image, thumbnail
from siamese.serving.messages import GalleryError, Notices

MAX_GALLERY_IMAGES = 1000


@dataclass(frozen=True)
class GallerySource:
    """What a gallery was built from: the uploaded files, folders and .zip archives, and the captions.

    A gallery is built again from its source when the model changes: the images a .zip unpacks to are removed as
    soon as they are embedded, and a server removes old uploads too (then `missing` names them).
    """

    paths: list[str]
    captions: str | None = None

    def missing(self) -> list[str]:
        return [path for path in self.paths if not Path(path).exists()]


@dataclass
class GalleryState:
    """A session's gallery: embeddings with labels (`gallery`) and a small picture of each reference.

    `source` is what it was built from, so it can be built again when the model changes; a saved gallery file from
    `siamese embed` (`index`, any size) has neither images nor `gallery` and stays tied to `model_name`.
    """

    model_name: str
    gallery: Gallery | None
    thumbnails: list  # one picture per reference, as the server keeps it (see GalleryImages.sort's `picture`)
    source: GallerySource | None = None
    index: GalleryIndex | None = None

    @property
    def labels(self) -> list[str]:
        return self.index.labels if self.index is not None else self.gallery.labels

    @property
    def names(self) -> list[str]:
        return self.index.paths if self.index is not None else self.gallery.names


def caption_labels(captions: str | None, count: int) -> list[str] | None:
    """Labels typed one per line or comma separated; None when empty; a GalleryError when the count is off."""
    if not captions or not captions.strip():
        return None
    separator = "\n" if "\n" in captions.strip() else ","
    labels = [label.strip() for label in captions.strip().split(separator)]
    empty = [str(position + 1) for position, label in enumerate(labels) if not label]
    if empty:
        which = f"label {empty[0]} is" if len(empty) == 1 else f"labels {', '.join(empty)} are"
        raise GalleryError(f"Give one non-empty label per image: {which} empty in {captions.strip()!r}.")
    if len(labels) != count:
        raise GalleryError(f"Give one non-empty label per image: got {len(labels)} label(s) for {count} image(s).")
    return labels


@dataclass
class LabelledUploads:
    """Image files to embed as a gallery, each with its label and the name it is shown under."""

    paths: list[str]
    labels: list[str]
    names: list[str]

    @classmethod
    @contextmanager
    def opened(cls, paths: list[str], captions: str | None = None) -> Iterator[LabelledUploads]:
        """Uploaded files, folders and .zip archives expanded to images, for the `with` block (what a .zip unpacks to
        is removed when it ends). Labels: the captions (one per image), else the class folder, else the file name.
        A GalleryError or UploadError says what is wrong with the upload."""
        if not paths:
            raise GalleryError(
                "The gallery is empty: upload images (labels from names like alice_1.png), or a .zip or folder "
                "with one sub-folder per label."
            )
        with expanded_uploads(paths, max_files=MAX_GALLERY_IMAGES) as uploads:
            if not uploads:
                raise GalleryError("The upload holds no image files (.png, .jpg, .pgm, ...), so the gallery is empty.")
            if len(uploads) > MAX_GALLERY_IMAGES:
                raise GalleryError(
                    f"A gallery holds at most {MAX_GALLERY_IMAGES} images; {len(uploads)} were uploaded."
                )
            labels = caption_labels(captions, len(uploads)) or [
                upload.label or label_from_filename(Path(upload.name).name) for upload in uploads
            ]
            yield cls([upload.path for upload in uploads], labels, [upload.name for upload in uploads])


@dataclass
class GalleryImages:
    """The usable, distinct images of an upload in the model's input form, with their labels and pictures."""

    images: list[torch.Tensor] = field(default_factory=list)  # uint8 (C, H, W) each
    pictures: list = field(default_factory=list)
    uploads: LabelledUploads = field(default_factory=lambda: LabelledUploads([], [], []))

    @classmethod
    def sort(
        cls,
        uploads: LabelledUploads,
        preprocessing: dict,
        notices: Notices,
        picture: Callable[[Image.Image], object] = thumbnail,
    ) -> GalleryImages:
        """Keep each usable image once: unusable files and (for a face model) photos with no face found are
        skipped, an image repeated under the same label is dropped, and one repeated under another label is kept
        twice; `notices` hears of each. `picture` makes what the server shows of a kept image (by default a small
        array). A GalleryError when nothing is usable."""
        kept, skipped, faceless, seen = cls(), [], [], {}
        duplicates, conflicts = 0, []
        for path, label, name in zip(uploads.paths, uploads.labels, uploads.names, strict=True):
            try:
                decoded = open_usable_image(path, name)
                image = prepare_image(decoded, preprocessing, name)  # (C, H, W)
            except NoFaceError:
                faceless.append(name)
                continue
            except ImageError as error:
                skipped.append(str(error))
                continue
            digest = image_digest(image)
            if digest in seen:
                first = seen[digest]
                if kept.uploads.labels[first] == label:
                    duplicates += 1
                    continue
                conflicts.append(f"{kept.uploads.names[first]} ({kept.uploads.labels[first]}) and {name} ({label})")
            seen.setdefault(digest, len(kept.images))
            kept.add(image, picture(decoded), path, label, name)
        if skipped:
            listed = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
            notices.warning(f"Skipped {len(skipped)} file(s) that are not usable images: {listed}")
        if faceless:
            listed = ", ".join(faceless[:10]) + (f" and {len(faceless) - 10} more" if len(faceless) > 10 else "")
            notices.warning(f"Skipped {len(faceless)} photo(s) in which no face was found: {listed}")
        if not kept.images:
            if faceless and not skipped:
                raise GalleryError("No face was found in any of the uploaded photos, so the gallery is empty.")
            raise GalleryError("None of the uploaded files is a usable image, so the gallery is empty.")
        if duplicates:
            notices.warning(f"Dropped {duplicates} duplicate image(s) that repeat an image with the same label.")
        if conflicts:
            notices.warning(f"The same image carries different labels: {'; '.join(conflicts[:3])}. Both are kept.")
        return kept

    def add(self, image: torch.Tensor, picture, path: str, label: str, name: str) -> None:
        self.images.append(image)
        self.pictures.append(picture)
        self.uploads.paths.append(path)
        self.uploads.labels.append(label)
        self.uploads.names.append(name)


def single_label_warning(gallery: Gallery) -> str | None:
    """What a gallery of one label cannot tell apart, or None for a gallery of several labels."""
    if len(gallery.label_names) != 1:
        return None
    return (
        f"The gallery has a single label ({gallery.label_names[0]!r}): every query gets that label unless it "
        "lies beyond the threshold, and there is no margin to a second label."
    )
