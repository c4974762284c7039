"""Serving models to people: the rules that decide a similarity server's answers, with no web framework.

Which images are usable and which input is in use (`images`), the faces a face model uses and names
(`faces`), the models offered and their thresholds (`models`), gallery labels, duplicates and conflicts
(`gallery`), the embedding cache (`cache`), the out-of-distribution caution (`references`), t-SNE maps
(`maps`), and `SimilarityService`, which answers requests with all of them. The Gradio app in `demo/` renders
what it returns.
"""

from siamese.serving.cache import EmbeddingCache, image_digest
from siamese.serving.faces import NamedFace, name_faces, used_face_note
from siamese.serving.gallery import (
    MAX_GALLERY_IMAGES,
    GalleryImages,
    GallerySource,
    GalleryState,
    LabelledUploads,
    caption_labels,
)
from siamese.serving.images import (
    ImageSlot,
    PreparedInput,
    check_example_domain,
    is_face_model,
    model_kind,
    no_face_message,
    open_usable_image,
    prepare_usable_image,
    prepare_usable_input,
    thumbnail,
)
from siamese.serving.maps import MAX_MAP_IMAGES, DrawnMap, EmbeddingMaps
from siamese.serving.messages import (
    CollectedNotices,
    GalleryError,
    InputError,
    LoggedNotices,
    MapError,
    ModelChoiceError,
    Notices,
    ServingError,
)
from siamese.serving.models import ModelRegistry, ModelSpec, gallery_thresholds, pair_threshold
from siamese.serving.references import (
    OUT_OF_DISTRIBUTION_REFERENCES,
    ExampleSources,
    OutOfDistributionCheck,
    ReferenceImages,
)
from siamese.serving.service import GalleryAnswer, PairComparison, SimilarityService

__all__ = [
    "MAX_GALLERY_IMAGES",
    "MAX_MAP_IMAGES",
    "OUT_OF_DISTRIBUTION_REFERENCES",
    "CollectedNotices",
    "DrawnMap",
    "EmbeddingCache",
    "EmbeddingMaps",
    "ExampleSources",
    "GalleryAnswer",
    "GalleryError",
    "GalleryImages",
    "GallerySource",
    "GalleryState",
    "ImageSlot",
    "InputError",
    "LabelledUploads",
    "LoggedNotices",
    "MapError",
    "ModelChoiceError",
    "ModelRegistry",
    "ModelSpec",
    "NamedFace",
    "Notices",
    "OutOfDistributionCheck",
    "PairComparison",
    "PreparedInput",
    "ReferenceImages",
    "ServingError",
    "SimilarityService",
    "caption_labels",
    "check_example_domain",
    "gallery_thresholds",
    "image_digest",
    "is_face_model",
    "model_kind",
    "name_faces",
    "no_face_message",
    "open_usable_image",
    "pair_threshold",
    "prepare_usable_image",
    "prepare_usable_input",
    "thumbnail",
    "used_face_note",
]
