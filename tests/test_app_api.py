"""The launched app through gradio_client: every named endpoint, and a bad input that errors while serving goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gradio.data_classes import _StaticFiles
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")

import app  # noqa: E402
from demo.media import LIMITS, PREVIEW_FOLDER  # noqa: E402
from demo.server import SnapshotSet, launch_options  # noqa: E402
from scripts.standin_models import make_standin  # noqa: E402
from siamese.data import examples as example_data  # noqa: E402

pytestmark = pytest.mark.slow

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = {"/model_info", "/compare_pair", "/build_gallery", "/load_example_gallery", "/rank_query", "/embedding_map"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    specs = [app.ModelSpec("mnist", str(make_standin(folder / "mnist", "digits")))]
    demo = app.build_demo(specs)
    yield app.serve_in_background(demo)
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def digit_paths(tmp_path_factory) -> list[str]:
    digits = example_data.load_digits()
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for digit in (3, 3, 8):
        index = int(np.nonzero(digits.labels.numpy() == digit)[0][len(paths)])
        path = folder / f"{digit}_{len(paths)}.png"
        Image.fromarray(digits.images[index, 0].numpy()).save(path)
        paths.append(str(path))
    return paths


def test_every_named_endpoint_is_listed(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named >= ENDPOINTS


def test_model_info(client):
    assert "threshold" in client.predict("mnist", api_name="/model_info")


def test_compare_pair_returns_distance_and_verdict(client, digit_paths):
    handle = gradio_client.handle_file
    verdict, details, plot, preview = client.predict(
        "mnist", None, handle(digit_paths[0]), None, handle(digit_paths[0]), api_name="/compare_pair"
    )
    assert details["distance"] == pytest.approx(0.0, abs=1e-5) and details["same"] is True
    assert verdict.startswith("## Same")
    assert plot is not None and preview is not None


def test_previews_are_served_from_where_they_were_written_not_copied(client, digit_paths):
    """The preview folder is a static path: its write-once files go out as they lie, never hashed into Gradio's
    cache, and building another demo does not register the folder again."""
    handle = gradio_client.handle_file
    _, _, _, preview = client.predict(
        "mnist", None, handle(digit_paths[0]), None, handle(digit_paths[2]), api_name="/compare_pair"
    )
    served = Path(preview["path"])
    assert served.parent == PREVIEW_FOLDER.resolve()
    with urllib.request.urlopen(preview["url"], timeout=30) as response:
        assert response.read() == served.read_bytes()
    app.build_demo([app.ModelSpec("mnist", str(app.BUNDLED_MODELS["mnist"]))])
    registered = [path for path in _StaticFiles.all_paths if path == PREVIEW_FOLDER.resolve()]
    assert len(registered) == 1


def test_gradio_removes_old_uploads_and_a_sweep_runs_while_the_app_serves():
    """The upload cache is cleared on the schedule the README states (gr.Blocks(delete_cache=...)); the lifespan
    starts the sweep of what Gradio leaves (empty folders) and of the preview stores."""
    demo = app.build_demo([app.ModelSpec("mnist", str(app.BUNDLED_MODELS["mnist"]))])
    assert demo.delete_cache == LIMITS.cache_schedule == (LIMITS.sweep_every, LIMITS.cache_max_age)
    assert callable(launch_options()["app_kwargs"]["lifespan"])
    # Gradio walks these sets in a thread while requests add to them: a plain set raises there, once and for all.
    assert all(isinstance(files, SnapshotSet) for files in demo.temp_file_sets)
    assert any(files is demo.upload_file_set for files in demo.temp_file_sets)
    growing = SnapshotSet({"upload"})
    for name in growing:
        growing.add(name + "-next")  # a plain set: RuntimeError, "Set changed size during iteration"
    assert growing == {"upload", "upload-next"}


def test_gradio_refreshes_its_event_analytics_every_200_events_not_every_event():
    """Importing app sets the refresh interval that Gradio's queue reads when it is made (gradio-app/gradio#11764);
    at Gradio's default of 1 it rebuilds a table of up to 10,000 events on every request."""
    probe = (
        "import app, gradio as gr\n"
        "with gr.Blocks() as demo:\n"
        "    gr.Markdown('queue only')\n"
        "demo.queue()\n"
        "print(demo._queue.ANAYLTICS_CACHE_FREQUENCY)\n"  # sic: Gradio's own spelling
    )
    environment = {key: value for key, value in os.environ.items() if key != "GRADIO_ANALYTICS_CACHE_FREQUENCY"}
    output = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPOSITORY_ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert output.returncode == 0, output.stderr[-2000:]
    assert output.stdout.split()[-1] == "200"


def test_bad_input_comes_back_as_an_error_and_the_server_keeps_serving(client, digit_paths, tmp_path):
    text = tmp_path / "not_an_image.png"
    text.write_text("hello")
    handle = gradio_client.handle_file
    with pytest.raises(gradio_client.exceptions.AppError):
        client.predict("mnist", None, handle(str(text)), None, handle(digit_paths[0]), api_name="/compare_pair")
    with pytest.raises(gradio_client.exceptions.AppError, match="empty"):
        client.predict("mnist", None, None, None, handle(digit_paths[0]), api_name="/compare_pair")
    _, details, _, _ = client.predict(
        "mnist", None, handle(digit_paths[0]), None, handle(digit_paths[2]), api_name="/compare_pair"
    )
    assert details["distance"] > 0


def test_gallery_built_once_then_ranked(client, digit_paths):
    handle = gradio_client.handle_file
    status, preview = client.predict(
        "mnist", [handle(path) for path in digit_paths[:2] + digit_paths[2:]], "", api_name="/build_gallery"
    )
    assert "3** images" in status and "2** labels" in status
    verdict, table, matches = client.predict("mnist", None, handle(digit_paths[1]), 2, api_name="/rank_query")
    assert len(table["data"]) == 2 and table["data"][0][1] in {"3", "8"}
    assert verdict.startswith("##")


def test_example_gallery_and_rank(client, digit_paths):
    status, preview = client.predict("mnist", "digits", 2, api_name="/load_example_gallery")
    assert "20** images" in status and "10** labels" in status
    verdict, table, _ = client.predict(
        "mnist", None, gradio_client.handle_file(digit_paths[2]), 3, api_name="/rank_query"
    )
    assert len(table["data"]) == 3


def test_embedding_map_places_the_users_images(client, digit_paths):
    plot, note = client.predict(
        "mnist", 200, 15, [gradio_client.handle_file(path) for path in digit_paths], api_name="/embedding_map"
    )
    assert "inverse-distance-weighted" in note
    assert plot is not None


def test_user_errors_leave_no_traceback_in_the_server_log(server, digit_paths, tmp_path, capfd, caplog):
    """Every ordinary mistake comes back as a message, and the server's stderr and log hold no traceback."""
    # A session of its own: a gallery built by another test's session must not answer the "no gallery" call.
    client = gradio_client.Client(server, verbose=False, download_files=False)
    handle = gradio_client.handle_file
    text = tmp_path / "not_an_image.png"
    text.write_text("hello")
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    zipped = tmp_path / "escape.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("../escape.png", b"x")
    capfd.readouterr()
    calls = [
        (("mnist", None, handle(str(text)), None, handle(digit_paths[0])), "/compare_pair", "not an image"),
        (("mnist", None, None, None, handle(digit_paths[0])), "/compare_pair", "empty"),
        (("mnist", None, handle(str(blank)), None, handle(digit_paths[0])), "/compare_pair", "blank"),
        (("mnist", [], ""), "/build_gallery", "gallery is empty"),
        (("mnist", [handle(digit_paths[0]), handle(digit_paths[2])], "a,"), "/build_gallery", "label 2 is empty"),
        (("mnist", [handle(str(zipped))], ""), "/build_gallery", "'..'"),
        (("mnist", None, handle(digit_paths[0]), 3), "/rank_query", "Build a gallery first"),
        (("mnist", 200, 15, [handle(str(text))]), "/embedding_map", "not an image"),
    ]
    for arguments, endpoint, message in calls:
        with pytest.raises(gradio_client.exceptions.AppError, match=message):
            client.predict(*arguments, api_name=endpoint)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert "Traceback" not in caplog.text
