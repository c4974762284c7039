"""Siamese image similarity: a Gradio app for pairs, one-shot galleries and t-SNE maps.

    python app.py                         # the bundled models in pretrained/, example data built in
    python app.py --model user/repo       # add a Hub model (repeatable; or SIAMESE_MODELS=a/b,c/d)

The page is `demo/` (its handlers: `demo.handlers.SimilarityApp`), the rules behind its answers `siamese.serving`;
this file wires them and launches. Runs unchanged as a Hugging Face Space.
"""

from __future__ import annotations

import os

from demo.handlers import SimilarityApp
from demo.layout import build_demo
from demo.server import (
    BUNDLED_MODELS,
    CONCURRENCY_LIMIT,
    MALLOC_ARENAS,
    QUEUE_SIZE,
    free_port,
    launch_options,
    limit_malloc_arenas,
    model_specs,
    parse_args,
    serve_in_background,
)
from siamese.serving import ModelSpec

__all__ = [
    "BUNDLED_MODELS",
    "CONCURRENCY_LIMIT",
    "MALLOC_ARENAS",
    "QUEUE_SIZE",
    "ModelSpec",
    "SimilarityApp",
    "build_demo",
    "free_port",
    "limit_malloc_arenas",
    "main",
    "serve_in_background",
]


def main(argv: list[str] | None = None) -> None:
    # First, before model loading and the server start threads that would each take an arena.
    limit_malloc_arenas()
    args = parse_args(argv)
    specs, missing = model_specs(args)
    # A Space has a network; elsewhere the faces are only used if already cached.
    download_faces = bool(os.environ.get("SPACE_ID"))
    handlers = SimilarityApp(specs, args.mnist_root, args.faces_root, download_faces, missing)
    demo = build_demo(
        mnist_root=args.mnist_root, faces_root=args.faces_root, download_faces=download_faces, app=handlers
    )
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)
    demo.launch(**launch_options(args.host, args.port, args.share))


if __name__ == "__main__":
    main()
