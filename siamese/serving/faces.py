"""Photos for face models: which face of a photo was used and how to say so, and every face of a group photo
named against a gallery ("no match" for a stranger)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from siamese.data.images import chip_to_tensor
from siamese.faces.pipeline import FoundFace
from siamese.search.gallery import Ranking
from siamese.serving.images import PreparedInput


def used_face_note(prepared: PreparedInput) -> str | None:
    """The line that says which face of a photo with several was used; None for one face or no face model."""
    if not prepared.faces or prepared.faces[0].face_count < 2:
        return None
    label = prepared.label[:1].upper() + prepared.label[1:]
    return f"{label} has {prepared.faces[0].face_count} faces; the largest (box drawn) was used."


@dataclass(frozen=True, eq=False)
class NamedFace:
    """One face of a photo, its embedding (D,) and its ranking against a gallery; `name` is the gallery label it
    matches, or None when even the nearest reference lies beyond the gallery threshold (a stranger)."""

    found: FoundFace
    embedding: torch.Tensor
    ranking: Ranking

    @property
    def name(self) -> str | None:
        return self.ranking.best_label if self.ranking.is_match else None


def name_faces(model, faces: list[FoundFace], rank: Callable[[torch.Tensor], Ranking]) -> list[NamedFace]:
    """Every face of a photo embedded in one batch and named by `rank` (a gallery's ranking of one embedding (D,)),
    in the order given (the pipeline's: largest first)."""
    if not faces:
        return []
    chips = torch.stack([chip_to_tensor(face.chip) for face in faces])  # (F, 3, 150, 150)
    embeddings = model.encode(chips)  # (F, D)
    return [NamedFace(face, embedding, rank(embedding)) for face, embedding in zip(faces, embeddings, strict=True)]
