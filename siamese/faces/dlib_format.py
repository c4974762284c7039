"""A reader for dlib's binary serialization, enough for the DNN in `dlib_face_recognition_resnet_model_v1.dat`.

dlib writes a network as nested layers, outermost first: the loss layer, then one small version number per
wrapper (`add_layer`, `add_tag_layer`, `add_skip_layer`) down to the input layer, and then, unwinding back
outwards, each computational layer's details (a version string such as "con_4" and its fields). The file
holds no C++ type names, so tag and skip wrappers are only seen as markers ("tag_or_skip"); the network's
structure (which tag each `add_prev` adds) comes from the code that defines it (`siamese.faces.resnet`).

Encodings (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h):

- integers: one control byte (low nibble: how many little-endian value bytes follow; 0x80: negative),
  then the magnitude;
- floating-point numbers: an integer mantissa and a 16-bit integer exponent, value = mantissa * 2**exponent;
- strings: an unsigned length, then the bytes; booleans: the character '0' or '1';
- tensors: version 2, four dimensions (samples, k, rows, columns), then raw little-endian float32 values.

Nothing here unpickles or executes anything from the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

# float_details marks the special values with these exponents.
_EXPONENT_INFINITY = 32000
_EXPONENT_NEGATIVE_INFINITY = 32001
_EXPONENT_NAN = 32002
_LONGEST_NAME = 256  # no layer or version name in dlib comes close; a larger length means a misparse


class DlibFormatError(ValueError):
    """The bytes are not the dlib serialization this reader expects (the message says where and what)."""


@dataclass(frozen=True, eq=False)
class DlibLayer:
    """One layer as stored: its kind ("con", "affine", ...), the version string in the file, tensors and fields."""

    kind: str
    version: str
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    attributes: dict[str, object] = field(default_factory=dict)
    offset: int = 0  # byte offset of the layer's details in the file, for error messages


@dataclass(frozen=True, eq=False)
class DlibNetwork:
    """A parsed network: the input layer, the layers in forward order (input side first) and the loss layer."""

    input: DlibLayer
    layers: list[DlibLayer]
    loss: DlibLayer


class DlibReader:
    """Reads dlib's primitive encodings from a bytes object, keeping the position."""

    def __init__(self, data: bytes, position: int = 0):
        self.data = memoryview(data)
        self.position = position

    def _fail(self, message: str, position: int | None = None) -> DlibFormatError:
        where = self.position if position is None else position
        return DlibFormatError(f"{message} (at byte {where} of {len(self.data)})")

    def _take(self, count: int, what: str) -> memoryview:
        if count < 0 or self.position + count > len(self.data):
            raise self._fail(f"unexpected end of data reading {what}: needs {count} bytes")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def at_end(self) -> bool:
        return self.position >= len(self.data)

    def read_int(self, what: str = "an integer") -> int:
        """A signed integer (int, long, int64 ... all share one encoding)."""
        start = self.position
        control = self._take(1, what)[0]
        if control & 0x70:
            raise self._fail(f"bad control byte 0x{control:02x} reading {what}", start)
        size = control & 0x0F
        if not 1 <= size <= 8:
            raise self._fail(f"bad integer size {size} reading {what}", start)
        value = int.from_bytes(self._take(size, what), "little")
        return -value if control & 0x80 else value

    def read_uint(self, what: str = "an unsigned integer") -> int:
        """An unsigned integer: the same encoding, but a sign bit is an error."""
        start = self.position
        value = self.read_int(what)
        if value < 0 or self.data[start] & 0x80:
            raise self._fail(f"negative value reading {what}", start)
        return value

    def read_float(self, what: str = "a floating-point number") -> float:
        """A float or double in dlib's portable form (mantissa * 2**exponent)."""
        start = self.position
        if self.at_end():
            raise self._fail(f"unexpected end of data reading {what}")
        if self.data[self.position] & 0x70:
            # Very old dlib wrote numbers as text; no network file this reader targets does.
            raise self._fail(f"{what} is in dlib's old text format, which this reader does not support", start)
        mantissa = self.read_int(what + " (mantissa)")
        exponent = self.read_int(what + " (exponent)")
        if exponent == _EXPONENT_INFINITY:
            return math.inf
        if exponent == _EXPONENT_NEGATIVE_INFINITY:
            return -math.inf
        if exponent == _EXPONENT_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def read_bool(self, what: str = "a boolean") -> bool:
        start = self.position
        character = self._take(1, what)[0]
        if character not in (ord("0"), ord("1")):
            raise self._fail(f"bad boolean byte 0x{character:02x} reading {what}", start)
        return character == ord("1")

    def read_string(self, what: str = "a string") -> str:
        start = self.position
        length = self.read_uint(what + " (length)")
        if length > _LONGEST_NAME:
            raise self._fail(f"implausible string length {length} reading {what}", start)
        raw = bytes(self._take(length, what))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self._fail(f"non-ASCII bytes reading {what}: {raw[:40]!r}", start) from None

    def peek_string(self) -> str | None:
        """The string at the current position if one plausibly starts there, else None; never moves."""
        start = self.position
        try:
            text = self.read_string()
        except DlibFormatError:
            return None
        finally:
            self.position = start
        return text if text and text.isprintable() else None

    def read_tensor(self, what: str = "a tensor") -> np.ndarray:
        """A resizable_tensor: (samples, k, rows, columns) float32."""
        start = self.position
        version = self.read_int(what + " (version)")
        if version != 2:
            raise self._fail(f"unexpected tensor version {version} reading {what}", start)
        shape = tuple(self.read_int(what + " (dimension)") for _ in range(4))
        if any(size < 0 for size in shape):
            raise self._fail(f"negative tensor dimension {shape} reading {what}", start)
        count = math.prod(shape)
        raw = self._take(4 * count, what + f" ({count} float32 values)")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)  # a copy, native byte order

    def read_alias_tensor(self, what: str = "an alias tensor") -> tuple[int, int, int, int]:
        """An alias_tensor: only its (samples, k, rows, columns) shape; its values live in the layer's params."""
        start = self.position
        version = self.read_int(what + " (version)")
        if version != 1:
            raise self._fail(f"unexpected alias tensor version {version} reading {what}", start)
        return tuple(self.read_int(what + " (dimension)") for _ in range(4))


# ---------------------------------------------------------------------------------------------------------
# Layer details, keyed by the version strings dlib writes.


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 0


def _split_params(reader: DlibReader, params: np.ndarray, shapes: dict[str, tuple[int, ...]], start: int):
    """Cut the flat params tensor into named pieces of the given shapes, checking the sizes add up."""
    flat = params.reshape(-1)
    needed = sum(_size(shape) for shape in shapes.values())
    if flat.size != needed:
        raise reader._fail(f"params hold {flat.size} values but the layer's shapes need {needed}", start)
    pieces, offset = {}, 0
    for name, shape in shapes.items():
        pieces[name] = flat[offset : offset + _size(shape)].reshape(shape).copy()
        offset += _size(shape)
    return pieces


def _read_con(reader: DlibReader, version: str, start: int) -> DlibLayer:
    params = reader.read_tensor("con params")
    attributes = {
        "num_filters": reader.read_int("con num_filters"),
        "rows": reader.read_int("con nr"),
        "columns": reader.read_int("con nc"),
        "stride_y": reader.read_int("con stride_y"),
        "stride_x": reader.read_int("con stride_x"),
        "padding_y": reader.read_int("con padding_y"),
        "padding_x": reader.read_int("con padding_x"),
    }
    filters = reader.read_alias_tensor("con filters")
    biases = reader.read_alias_tensor("con biases")
    for name in ("learning_rate_multiplier", "weight_decay_multiplier"):
        attributes[name] = reader.read_float(f"con {name}")
    for name in ("bias_learning_rate_multiplier", "bias_weight_decay_multiplier"):
        attributes[name] = reader.read_float(f"con {name}")
    # con_4 predates the flags; its biases are always there.
    attributes["use_bias"] = reader.read_bool("con use_bias") if version in ("con_5", "con_6") else True
    attributes["use_relu"] = reader.read_bool("con use_relu") if version == "con_6" else False
    if filters[0] != attributes["num_filters"] or filters[2:] != (attributes["rows"], attributes["columns"]):
        raise reader._fail(f"con filter shape {filters} disagrees with its fields {attributes}", start)
    shapes = {"weight": filters}
    if attributes["use_bias"]:
        shapes["bias"] = (attributes["num_filters"],)
        if _size(biases) != attributes["num_filters"]:
            raise reader._fail(f"con bias shape {biases} for {attributes['num_filters']} filters", start)
    return DlibLayer("con", version, _split_params(reader, params, shapes, start), attributes, start)


def _read_affine(reader: DlibReader, version: str, start: int) -> DlibLayer:
    params = reader.read_tensor("affine params")
    gamma = reader.read_alias_tensor("affine gamma")
    beta = reader.read_alias_tensor("affine beta")
    attributes = {"mode": reader.read_int("affine mode")}
    attributes["disabled"] = reader.read_bool("affine disabled") if version == "affine_2" else False
    if gamma != beta:
        raise reader._fail(f"affine gamma {gamma} and beta {beta} differ in shape", start)
    tensors = _split_params(reader, params, {"gamma": gamma, "beta": beta}, start) if params.size else {}
    return DlibLayer("affine", version, tensors, attributes, start)


def _read_batch_norm(reader: DlibReader, version: str, start: int) -> DlibLayer:
    """A batch-norm layer where an affine layer is expected: dlib folds its running statistics on loading."""
    params = reader.read_tensor("bn params")
    gamma = reader.read_alias_tensor("bn gamma")
    beta = reader.read_alias_tensor("bn beta")
    for name in ("means", "invstds"):
        reader.read_tensor(f"bn {name}")  # statistics of the last training batch; not used at inference
    running_means = reader.read_tensor("bn running_means").reshape(-1)
    running_variances = reader.read_tensor("bn running_variances").reshape(-1)
    reader.read_uint("bn num_updates")
    reader.read_uint("bn running_stats_window_size")
    for name in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        reader.read_float(f"bn {name} multiplier")
    epsilon = reader.read_float("bn eps")
    pieces = _split_params(reader, params, {"gamma": gamma, "beta": beta}, start)
    if running_means.size != pieces["gamma"].size or running_variances.size != pieces["gamma"].size:
        raise reader._fail("bn running statistics do not match gamma's size", start)
    # Computed in float32 as dlib does: scale = gamma / sqrt(var + eps), shift = beta - scale * mean.
    scale = pieces["gamma"] / np.sqrt(running_variances.reshape(gamma) + np.float32(epsilon))
    shift = pieces["beta"] - scale * running_means.reshape(gamma)
    mode = 0 if version == "bn_con2" else 1
    tensors = {"gamma": scale.astype(np.float32), "beta": shift.astype(np.float32)}
    return DlibLayer("affine", version, tensors, {"mode": mode, "disabled": False, "epsilon": epsilon}, start)


def _read_relu(reader: DlibReader, version: str, start: int) -> DlibLayer:
    disabled = reader.read_bool("relu disabled") if version == "relu_2" else False
    return DlibLayer("relu", version, {}, {"disabled": disabled}, start)


def _read_pool(kind: str):
    def read(reader: DlibReader, version: str, start: int) -> DlibLayer:
        attributes = {
            "rows": reader.read_int(f"{kind} nr"),
            "columns": reader.read_int(f"{kind} nc"),
            "stride_y": reader.read_int(f"{kind} stride_y"),
            "stride_x": reader.read_int(f"{kind} stride_x"),
            "padding_y": reader.read_int(f"{kind} padding_y"),
            "padding_x": reader.read_int(f"{kind} padding_x"),
        }
        return DlibLayer(kind, version, {}, attributes, start)

    return read


def _read_add_prev(reader: DlibReader, version: str, start: int) -> DlibLayer:
    return DlibLayer("add_prev", version, {}, {}, start)


def _read_fc(reader: DlibReader, version: str, start: int) -> DlibLayer:
    attributes = {
        "num_outputs": reader.read_uint("fc num_outputs"),
        "num_inputs": reader.read_uint("fc num_inputs"),
    }
    params = reader.read_tensor("fc params")
    weights = reader.read_alias_tensor("fc weights")
    biases = reader.read_alias_tensor("fc biases")
    attributes["bias_mode"] = reader.read_int("fc bias_mode")  # 0: has a bias, 1: fc_no_bias
    for name in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        attributes[f"{name}_multiplier"] = reader.read_float(f"fc {name} multiplier")
    attributes["use_bias"] = reader.read_bool("fc use_bias") if version == "fc_3" else True
    has_bias = attributes["bias_mode"] == 0 and attributes["use_bias"]
    attributes["has_bias"] = has_bias
    if weights[:2] != (attributes["num_inputs"], attributes["num_outputs"]):
        raise reader._fail(f"fc weight shape {weights} disagrees with {attributes}", start)
    # dlib multiplies (samples, inputs) by this (inputs, outputs) matrix.
    shapes = {"weight": (attributes["num_inputs"], attributes["num_outputs"])}
    if has_bias:
        shapes["bias"] = (_size(biases),)
    return DlibLayer("fc", version, _split_params(reader, params, shapes, start), attributes, start)


_LAYER_READERS = {
    "con_4": _read_con,
    "con_5": _read_con,
    "con_6": _read_con,
    "affine_": _read_affine,
    "affine_2": _read_affine,
    "bn_con2": _read_batch_norm,
    "bn_fc2": _read_batch_norm,
    "relu_": _read_relu,
    "relu_2": _read_relu,
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "add_prev_": _read_add_prev,
    "fc_2": _read_fc,
    "fc_3": _read_fc,
}


def _read_layer_details(reader: DlibReader) -> DlibLayer:
    start = reader.position
    version = reader.read_string("a layer's version string")
    layer_reader = _LAYER_READERS.get(version)
    if layer_reader is None:
        raise reader._fail(f"unsupported layer '{version}' (supported: {', '.join(sorted(_LAYER_READERS))})", start)
    return layer_reader(reader, version, start)


def _read_input_layer(reader: DlibReader) -> DlibLayer:
    start = reader.position
    version = reader.read_string("the input layer's version string")
    if version not in ("input_rgb_image", "input_rgb_image_sized"):
        raise reader._fail(f"unsupported input layer '{version}'", start)
    means = tuple(reader.read_float(f"input mean ({colour})") for colour in ("red", "green", "blue"))
    attributes: dict[str, object] = {"means": means}
    if version == "input_rgb_image_sized":
        attributes["rows"] = reader.read_uint("input rows")
        attributes["columns"] = reader.read_uint("input columns")
    return DlibLayer("input", version, {}, attributes, start)


def _read_loss(reader: DlibReader) -> DlibLayer:
    start = reader.position
    version = reader.read_string("the loss layer's version string")
    if version == "loss_metric_":
        return DlibLayer("loss_metric", version, {}, {"margin": 0.1, "distance_threshold": 0.75}, start)
    if version == "loss_metric_2":
        margin = reader.read_float("loss margin")
        threshold = reader.read_float("loss distance threshold")
        return DlibLayer("loss_metric", version, {}, {"margin": margin, "distance_threshold": threshold}, start)
    raise reader._fail(f"unsupported loss layer '{version}'", start)


def _skip_add_layer_state(reader: DlibReader, version: int, innermost: bool) -> None:
    """The training state an add_layer writes after its details; read and dropped."""
    for name in ("this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"):
        reader.read_bool(f"add_layer {name}")
    reader.read_tensor("add_layer x_grad")
    reader.read_tensor("add_layer cached_output")
    reader.read_tensor("add_layer grad_final" if innermost else "add_layer params_grad")
    if innermost and version >= 3:
        reader.read_int("add_layer sample_expansion_factor")


def parse_dlib_network(data: bytes) -> DlibNetwork:
    """Parse a serialized dlib DNN (a loss layer over add_layer/tag/skip wrappers over an input layer)."""
    reader = DlibReader(data)
    loss_version = reader.read_int("the loss layer's version")
    if loss_version != 1:
        raise reader._fail(f"unexpected add_loss_layer version {loss_version}; is this a dlib DNN file?", 0)
    loss = _read_loss(reader)

    # One version number per wrapper, outermost first, until the input layer's name appears.
    wrapper_versions: list[int] = []
    while True:
        start = reader.position
        version = reader.read_int("a layer wrapper's version")
        if version not in (1, 2, 3):
            raise reader._fail(f"unexpected layer wrapper version {version}", start)
        wrapper_versions.append(version)
        following = reader.peek_string()
        if following is not None and following.startswith("input"):
            break
    if wrapper_versions[-1] not in (2, 3):
        raise reader._fail("the layer next to the input is not an add_layer (a tag on the input is unsupported)")

    input_layer = _read_input_layer(reader)
    layers = [_read_layer_details(reader)]
    _skip_add_layer_state(reader, wrapper_versions[-1], innermost=True)
    for version in reversed(wrapper_versions[:-1]):
        if version == 1:
            # add_tag_layer and add_skip_layer (both version 1) write nothing after their subnetwork.
            layers.append(DlibLayer("tag_or_skip", "", {}, {}, reader.position))
        elif version == 2:
            layers.append(_read_layer_details(reader))
            _skip_add_layer_state(reader, version, innermost=False)
        else:
            raise reader._fail(f"add_layer version {version} is only valid next to the input layer")
    if not reader.at_end():
        raise reader._fail(f"{len(reader.data) - reader.position} unexpected bytes after the network")
    return DlibNetwork(input_layer, layers, loss)


def read_dlib_network(path: str | os.PathLike) -> DlibNetwork:
    """Read and parse a dlib DNN file such as `dlib_face_recognition_resnet_model_v1.dat`."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        return parse_dlib_network(data)
    except DlibFormatError as error:
        raise DlibFormatError(f"{os.fspath(path)}: {error}") from None
