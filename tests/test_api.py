"""The public API: `SiameseModel.from_pretrained`, `encode`, `similarity`, `verify`, and the typed config."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import siamese
from siamese.data.datasets import to_float
from siamese.data.images import prepare_image
from siamese.modeling.config import NETWORK_FIELDS, ConfigError, ModelConfig
from siamese.modeling.files import ModelLoadError
from siamese.modeling.network import EmbeddingNet
from siamese.modeling.pretrained import save_model

ROOT = Path(__file__).resolve().parents[1]
FACES_PREPROCESSING = {"kind": "faces", "grayscale": True, "size": [24, 20], "mean": 0.5, "std": 0.5}


def small_model(calibration: dict | None = None) -> EmbeddingNet:
    torch.manual_seed(0)
    return EmbeddingNet(
        architecture="convnet",
        embedding_dim=8,
        image_size=(24, 20),
        widths=(4, 8),
        normalize=True,
        preprocessing=FACES_PREPROCESSING,
        calibration=calibration,
    ).eval()


def face_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (56, 46), dtype=np.uint8)


def test_the_public_names_load_lazily_and_siamese_model_is_the_embedding_network():
    assert siamese.SiameseModel is EmbeddingNet
    with pytest.raises(AttributeError):
        siamese.NoSuchThing  # noqa: B018


def test_encode_gives_the_same_embedding_for_every_kind_of_input(tmp_path):
    model = small_model()
    array = face_image(1)
    path = tmp_path / "face.png"
    Image.fromarray(array).save(path)
    prepared = prepare_image(array, model.preprocessing)  # (1, 24, 20)
    with torch.inference_mode():
        expected = model(to_float(prepared.unsqueeze(0), model.preprocessing))[0]  # (D,)
    inputs = [
        str(path),
        path,
        Image.fromarray(array),
        array,
        torch.from_numpy(array),  # uint8 (H, W), not yet at the model's size
        torch.from_numpy(array).float() / 255.0,  # float in [0, 1]
        prepared,  # uint8 (C, H, W) already at the model's size
    ]
    for value in inputs:
        embedding = model.encode(value)
        assert embedding.shape == (1, 8)
        torch.testing.assert_close(embedding[0], expected, atol=2e-6, rtol=0)
    batch = model.encode([str(path), array, prepared])
    assert batch.shape == (3, 8)
    torch.testing.assert_close(batch.norm(dim=1), torch.ones(3))


def test_encode_batches_give_the_same_embeddings_as_one_batch():
    model = small_model()
    images = [face_image(seed) for seed in range(7)]
    torch.testing.assert_close(model.encode(images, batch_size=3), model.encode(images, batch_size=256))


def test_encode_refuses_what_is_not_an_image():
    from siamese.data.images import ImageError

    model = small_model()
    with pytest.raises(ImageError, match="no such file"):
        model.encode("does-not-exist.png")
    with pytest.raises(ImageError, match="no images"):
        model.encode([])
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(face_image(0), batch_size=0)


def test_similarity_and_verify_follow_the_one_verdict_rule():
    calibration = {
        "threshold": 0.9,
        "test": {"at_threshold": {"false_accept_rate": 0.04, "false_reject_rate": 0.06}},
    }
    model = small_model(calibration)
    first, second = [face_image(1), face_image(2)], [face_image(1), face_image(3)]
    distances = model.similarity(first, second)  # (2, 2)
    assert distances.shape == (2, 2) and float(distances[0, 0]) == pytest.approx(0.0, abs=1e-3)
    verdicts = model.verify(first, second)
    for index, result in enumerate(verdicts):
        assert result["distance"] == pytest.approx(float(distances[index, index]), abs=1e-4)
        assert result["same"] == (result["distance"] <= 0.9)
        assert result["false_accept_rate"] == 0.04 and result["false_reject_rate"] == 0.06
    assert model.verify(face_image(1), face_image(1))["same"] is True
    with pytest.raises(ValueError, match="pairs"):
        model.verify(first, [face_image(4)])


def test_from_pretrained_is_strict_about_missing_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = save_model(small_model({"threshold": 0.5}), tmp_path / "model", metrics={}, command="test")
    assert torch.equal(
        siamese.SiameseModel.from_pretrained(str(folder)).encode(face_image(0)), small_model().encode(face_image(0))
    )
    weights = load_file(folder / "model.safetensors")
    weights.pop(next(iter(weights)))
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match="missing from the weights"):
        siamese.SiameseModel.from_pretrained(str(folder))


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [
        ("normalise", True, "did you mean 'normalize'"),
        ("preprocesing", {}, "did you mean 'preprocessing'"),
    ],
)
def test_a_misspelled_config_key_is_a_clear_load_error(tmp_path, key, value, hint):
    folder = save_model(small_model(), tmp_path / "model", metrics={}, command="test")
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=hint):
        siamese.SiameseModel.from_pretrained(str(folder))


def test_a_misspelled_preprocessing_or_calibration_key_is_named():
    base = small_model().config_dict()
    with pytest.raises(ConfigError, match="'sizes'.*did you mean 'size'"):
        ModelConfig.from_dict({**base, "preprocessing": {**base["preprocessing"], "sizes": [1, 2]}})
    with pytest.raises(ConfigError, match="'treshold'.*did you mean 'threshold'"):
        ModelConfig.from_dict({**base, "calibration": {"treshold": 0.5}})


def test_model_config_is_typed_and_round_trips_and_names_every_network_argument():
    model = small_model({"threshold": 0.5})
    config = model.config
    assert isinstance(config, ModelConfig) and config.preprocessing.size == (24, 20)
    assert config.calibration.threshold == 0.5
    assert ModelConfig.from_dict(config.to_dict()) == config
    arguments = set(inspect.signature(EmbeddingNet.__init__).parameters) - {"self"}
    assert set(NETWORK_FIELDS) == arguments - {"preprocessing", "calibration", "training"}


@pytest.mark.parametrize("name", ["mnist", "faces"])
def test_bundled_models_load_through_the_public_api(name):
    """The faces model is dlib's descriptor, which embeds the face it finds: it is given one of the app's example
    faces (the AT&T convnet before it took a plain white square)."""
    if name == "faces":
        pytest.importorskip("dlib")
    model = siamese.SiameseModel.from_pretrained(str(ROOT / "pretrained" / name))
    assert model.config.calibration.threshold is not None
    face = str(ROOT / "demo" / "example_faces" / "s31" / "8.png")
    embedding = model.encode(face if name == "faces" else _digit_one())
    assert embedding.shape == (1, model.embedding_dim)


def _digit_one() -> np.ndarray:
    canvas = np.zeros((28, 28), dtype=np.uint8)
    canvas[4:24, 13:16] = 255
    return canvas
