"""The `siamese` command: embed a folder, search it with the calibrated verdict, resume, export, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from siamese import cli
from siamese.modeling.network import EmbeddingNet
from siamese.modeling.pretrained import save_model
from siamese.search.index import GalleryIndex

PREPROCESSING = {"kind": "folder", "grayscale": True, "size": [16, 16], "mean": 0.5, "std": 0.5}


@pytest.fixture
def model_folder(tmp_path):
    torch.manual_seed(0)
    model = EmbeddingNet(
        architecture="convnet",
        embedding_dim=8,
        image_size=(16, 16),
        widths=(4,),
        normalize=True,
        preprocessing=PREPROCESSING,
        calibration={"threshold": 0.5, "gallery_threshold": 0.4, "caution_margin": 0.05},
    )
    return save_model(model, tmp_path / "model", metrics={}, command="test")


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    for person in ("alice", "bob", "carol"):
        (tmp_path / "photos" / person).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20)).astype(np.uint8)).save(
                tmp_path / "photos" / person / f"{index}.png"
            )
    Image.fromarray(rng.integers(0, 255, (20, 20)).astype(np.uint8)).save(tmp_path / "photos" / "dave_1.png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    return tmp_path / "photos"


def test_embed_then_search_ranks_a_gallery_image_first_with_its_label(tmp_path, model_folder, photos, capsys):
    out = tmp_path / "gallery.safetensors"
    assert cli.main(["embed", str(photos), "--model", str(model_folder), "--out", str(out), "--no-progress"]) == 0
    index = GalleryIndex.load(out)
    assert len(index) == 10 and sorted(set(index.labels)) == ["alice", "bob", "carol", "dave"]
    assert "alice/0.png" in index.paths and index.model_id == str(model_folder.resolve())
    capsys.readouterr()
    query = str(photos / "bob" / "2.png")
    assert cli.main(["search", str(out), query, "--top-k", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{query}: bob")  # distance 0 to itself: within the gallery threshold
    assert printed[1].split()[:2] == ["1.", "bob"] and "d=0.0000" in printed[1]
    assert len(printed) == 4  # the verdict line and 3 matches


def test_an_interrupted_embed_resumes_from_its_partial_file(tmp_path, model_folder, photos, monkeypatch):
    out = tmp_path / "gallery.safetensors"
    monkeypatch.setattr(cli, "CHUNK_IMAGES", 4)
    calls = []
    original = cli._write_partial

    def crash_after_first_chunk(*arguments):
        original(*arguments)
        calls.append(arguments[-1])
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_write_partial", crash_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        cli.embed_folder(photos, str(model_folder), out, progress=False)
    assert not out.exists() and (tmp_path / "gallery.safetensors.partial").exists()
    resumed = cli.embed_folder(photos, str(model_folder), out, progress=False)
    assert calls[1] == 8  # the second run started at image 4, not 0
    fresh = cli.embed_folder(photos, str(model_folder), tmp_path / "fresh.safetensors", progress=False)
    torch.testing.assert_close(resumed.embeddings, fresh.embeddings)
    assert not (tmp_path / "gallery.safetensors.partial").exists()


def test_command_errors_are_one_clear_line(tmp_path, model_folder, photos, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["embed", str(empty), "--model", str(model_folder), "--out", str(tmp_path / "g")]) == 2
    assert "holds no image files" in capsys.readouterr().err
    gallery = tmp_path / "gallery.safetensors"
    cli.embed_folder(photos, str(model_folder), gallery, progress=False)
    assert cli.main(["search", str(gallery), str(photos / "notes.txt")]) == 2
    assert "notes.txt: not an image file" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(gallery.read_bytes()[:100])
    assert cli.main(["search", str(corrupt), str(photos / "dave_1.png")]) == 2
    assert "damaged" in capsys.readouterr().err
    other = EmbeddingNet(architecture="convnet", embedding_dim=6, image_size=(16, 16), widths=(4,), normalize=True,
                         preprocessing=PREPROCESSING)  # fmt: skip
    other_folder = save_model(other, tmp_path / "other", metrics={}, command="test")
    assert cli.main(["search", str(gallery), str(photos / "dave_1.png"), "--model", str(other_folder)]) == 2
    assert "8-d embeddings" in capsys.readouterr().err


def test_export_writes_onnx_and_a_program(tmp_path, model_folder, capsys):
    onnx, program = tmp_path / "m.onnx", tmp_path / "m.pt2"
    assert cli.main(["export", str(model_folder), "--onnx", str(onnx), "--program", str(program)]) == 0
    assert onnx.stat().st_size > 0 and program.stat().st_size > 0
    assert cli.main(["export", str(model_folder)]) == 2
    assert "--onnx FILE" in capsys.readouterr().err
