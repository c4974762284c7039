"""How the app is served: the models it offers, the command line, queue and upload limits, and the process."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import platform
import socket
from pathlib import Path

import gradio as gr

from demo.media import LIMITS, PREVIEWS, SHOWN_UPLOADS
from siamese.data import examples as example_data
from siamese.serving import ModelSpec
from siamese.serving.storage import DiskSweeper

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODELS = {"mnist": ROOT / "pretrained" / "mnist", "faces": ROOT / "pretrained" / "faces"}
MODELS_ENV = "SIAMESE_MODELS"
# Large enough for a saved gallery of ~150,000 160-d embeddings; images are also capped by pixel count.
MAX_FILE_SIZE = "100mb"
# Per event. The handlers hold the GIL most of the time, so more slots add no throughput, but with 8 the pair and
# gallery queues share the CPU evenly (benchmarks/app_load.py: p95 1.5 s instead of 1.9-2.1 s at 32 clients).
CONCURRENCY_LIMIT = 8
QUEUE_SIZE = 64


def bundled_specs() -> tuple[list[ModelSpec], dict[str, Path]]:
    """The bundled models that are present, and the missing ones apart."""
    specs = [ModelSpec(name, str(folder)) for name, folder in BUNDLED_MODELS.items() if folder.is_dir()]
    missing = {name: folder for name, folder in BUNDLED_MODELS.items() if not folder.is_dir()}
    return specs, missing


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Siamese image similarity demo")
    parser.add_argument("--model", action="append", default=[], help="extra model: Hub repo id or local folder")
    parser.add_argument("--no-bundled", action="store_true", help="serve only the --model models")
    parser.add_argument("--mnist-root", default=os.environ.get(example_data.MNIST_ROOT_ENV))
    parser.add_argument("--faces-root", default=os.environ.get(example_data.FACES_ROOT_ENV))
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860 or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    return parser.parse_args(argv)


def model_specs(args: argparse.Namespace) -> tuple[list[ModelSpec], dict[str, Path]]:
    """Bundled models (those present) plus --model and $SIAMESE_MODELS; the missing bundled ones apart."""
    specs, missing = ([], {}) if args.no_bundled else bundled_specs()
    extra = list(args.model) + [item for item in os.environ.get(MODELS_ENV, "").split(",") if item.strip()]
    specs += [ModelSpec.parse(item) for item in extra]
    return specs, missing


def launch_options(host: str | None = None, port: int | None = None, share: bool = False) -> dict:
    """The keyword arguments for demo.launch(): upload limit, the example cache as an allowed path, and the disk
    sweep for as long as the server runs."""
    return {
        "server_name": host,
        "server_port": port,
        "share": share,
        "max_file_size": MAX_FILE_SIZE,
        "allowed_paths": [str(example_data.cache_dir())],
        "show_error": True,
        "app_kwargs": {"lifespan": disk_sweep_lifespan()},
    }


class SnapshotSet(set):
    """A set that is iterated over a copy of itself, so that another thread may add to it meanwhile."""

    def __iter__(self):
        return iter(set.copy(self))  # copied in C under the GIL: no request thread adds halfway


def guard_temp_file_sets(demo: gr.Blocks) -> None:
    """Make Gradio's delete_cache survive load: its sets of temporary files become SnapshotSets.

    Gradio 6.31 walks each set in a worker thread while requests add uploads and outputs to them; the first time a
    set changes size under the walk, RuntimeError ends the schedule, and no file is removed again until a restart
    (benchmarks/app_disk.py: after 2,000 pairs, every upload was still there). Call once the page is built."""
    guarded = {id(files): SnapshotSet(files) for files in demo.temp_file_sets}
    demo.temp_file_sets = [guarded[id(files)] for files in demo.temp_file_sets]
    demo.upload_file_set = guarded[id(demo.upload_file_set)]
    for block in demo.blocks.values():
        if id(getattr(block, "temp_files", None)) in guarded:
            block.temp_files = guarded[id(block.temp_files)]


def disk_sweep_lifespan():
    """A lifespan for Gradio's FastAPI app: the preview stores and Gradio's upload folder swept while it serves.

    gr.Blocks(delete_cache=...) removes Gradio's old files but not their folders, nor the empty file gr.File leaves at
    every call; the sweep removes those, evicts the preview stores (counting files other processes wrote there), and
    removes zip extractions a killed process left behind."""
    sweeper = DiskSweeper(LIMITS, [PREVIEWS, SHOWN_UPLOADS], Path(gr.utils.get_upload_folder()))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        sweeper.start()
        try:
            yield
        finally:
            sweeper.stop()

    return lifespan


def serve_in_background(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None) -> str:
    """Queue and launch `demo` without blocking (tests, benchmarks, screenshots); returns its URL."""
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(host, port or free_port()))
    return url


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
MALLOC_ARENAS = 2


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc at `count` arenas, as MALLOC_ARENA_MAX would; True when the cap was set.

    Every server thread would otherwise get an arena of its own (up to 8 per core), and freed request buffers stay
    scattered over them: under load the server's RSS grew 18-42 MB per 1,000 requests and kept climbing; with 2 it
    grew 5-25 MB (benchmarks/app_load.py).
    Left alone where MALLOC_ARENA_MAX is already set, and where the C library is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False
