"""The `siamese` command: embed a folder into a gallery file, search it, export a model; and `siamese-train`.

siamese embed photos/ --model pretrained/faces --out gallery.safetensors
siamese search gallery.safetensors query.png --top-k 5
siamese export pretrained/faces --onnx faces.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings
from contextlib import closing
from itertools import islice
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from tqdm.auto import tqdm

from siamese.data.cache import prepare_in_processes
from siamese.data.folders import IMAGE_SUFFIXES
from siamese.data.images import ImageError
from siamese.evaluation.calibration import stored_gallery_threshold
from siamese.modeling.export import export_onnx, export_program
from siamese.modeling.files import ModelLoadError
from siamese.modeling.pretrained import load_model
from siamese.search.gallery import label_from_filename, rank_in_index
from siamese.search.index import GalleryIndex

# Embeddings are saved to the partial file after every chunk of this many images, so a killed
# run loses at most one chunk.
CHUNK_IMAGES = 2048
# Images per worker task: a face photo takes a fifth of a second, so small tasks keep both the progress bar and
# the last workers' share of the folder short.
WORKER_IMAGES = 16


class CommandError(RuntimeError):
    """A user error of the command line: printed as one line, exit status 2."""


def train_main(argv: list[str] | None = None) -> int:
    """`siamese-train`: the same as `python train.py`."""
    # On use: the other commands need none of the training code.
    from siamese.training.cli import main

    return main(argv)


def list_images(folder: str | Path) -> tuple[list[Path], list[str]]:
    """Image files under `folder` and their labels: the class sub-folder's name, else the file name's label."""
    root = Path(folder)
    if not root.is_dir():
        raise CommandError(f"{root} is not a folder")
    paths, labels = [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        paths.append(path)
        labels.append(str(relative.parent) if len(relative.parts) > 1 else label_from_filename(path.name))
    if not paths:
        raise CommandError(f"{root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths, labels


def _model_id(model_source: str) -> str:
    return str(Path(model_source).resolve()) if Path(model_source).is_dir() else model_source


def embed_folder(
    folder: str | Path,
    model_source: str,
    out: str | Path,
    revision: str | None = None,
    batch_size: int = 256,
    device: str | None = None,
    progress: bool = True,
    workers: int | None = None,
):
    """Embed every image under `folder` into a gallery file at `out`; resumes a killed run. Returns the index.

    `workers` processes decode the images (and find the faces, for a face model) while this one embeds them
    (0: all in this process; None: one per CPU). Files that cannot be used (unreadable, or a photo without a
    face) are skipped and named in a warning.
    """
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 (this process) or more, got {workers}")
    paths, labels = list_images(folder)
    root = Path(folder)
    relative = [str(path.relative_to(root)) for path in paths]
    model = load_model(model_source, revision=revision, device=device or "cpu")
    model_id = _model_id(model_source)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    # The partial file is only reused for the same model and the same list of files.
    key = hashlib.sha256(json.dumps([model_id, revision, relative]).encode()).hexdigest()
    done_embeddings, done_paths, done_labels, start = _read_partial(partial, key)
    skipped = []
    bar = tqdm(total=len(paths), initial=start, desc="Embedding", unit="img", disable=not progress)
    embeddings = list(done_embeddings)
    kept_paths, kept_labels = list(done_paths), list(done_labels)
    prepared = prepare_in_processes(
        paths[start:], model.preprocessing, names=relative[start:], workers=workers, chunk_size=WORKER_IMAGES
    )
    with closing(prepared):
        for chunk_start in range(start, len(paths), CHUNK_IMAGES):
            chunk = range(chunk_start, min(chunk_start + CHUNK_IMAGES, len(paths)))
            batch, chunk_paths, chunk_labels = [], [], []
            for index, image in zip(chunk, islice(prepared, len(chunk)), strict=True):
                bar.update()
                if isinstance(image, ImageError):
                    skipped.append(str(image))
                    continue
                batch.append(image)  # (C, H, W)
                chunk_paths.append(relative[index])
                chunk_labels.append(labels[index])
                # Embedded as each batch fills, so that the workers go on preparing the next images meanwhile.
                if len(batch) == batch_size:
                    embeddings.append(model.encode(torch.stack(batch), batch_size=batch_size))  # (b, D)
                    batch = []
            if batch:
                embeddings.append(model.encode(torch.stack(batch), batch_size=batch_size))  # (b, D)
            kept_paths += chunk_paths
            kept_labels += chunk_labels
            _write_partial(partial, key, embeddings, kept_paths, kept_labels, chunk.stop)
    bar.close()
    if skipped:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        warnings.warn(f"skipped {len(skipped)} image file(s) that could not be used: {shown}", stacklevel=2)
    if not kept_paths:
        raise CommandError(f"none of the {len(paths)} image files under {root} could be used")
    index = GalleryIndex(torch.cat(embeddings), kept_labels, kept_paths, model_id=model_id, revision=revision)
    index.save(out)
    partial.unlink(missing_ok=True)
    return index


def _read_partial(partial: Path, key: str):
    """Embeddings, paths and labels saved by an earlier run with the same key, and where it stopped."""
    if not partial.is_file():
        return [], [], [], 0
    try:
        with safe_open(str(partial), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("key") != key:
            return [], [], [], 0
        tensors = load_file(str(partial))
        return (
            [tensors["embeddings"]],
            json.loads(metadata["paths"]),
            json.loads(metadata["labels"]),
            int(metadata["next"]),
        )
    except (SafetensorError, OSError, KeyError, ValueError):
        return [], [], [], 0  # a damaged partial file: start again


def _write_partial(partial: Path, key: str, embeddings, paths, labels, next_index: int) -> None:
    if not embeddings:
        return
    temporary = partial.with_name(partial.name + ".tmp")
    metadata = {"key": key, "paths": json.dumps(paths), "labels": json.dumps(labels), "next": str(next_index)}
    save_file({"embeddings": torch.cat(embeddings).contiguous()}, str(temporary), metadata=metadata)
    os.replace(temporary, partial)


def search_gallery(
    gallery_file: str | Path, queries: list[str], model_source: str | None = None, top_k: int = 5
) -> list[dict]:
    """Rank each query image against a gallery file; each result has the matches and the calibrated verdict."""
    index = GalleryIndex.load(gallery_file)
    source = model_source or index.model_id
    if not source:
        raise CommandError(f"{gallery_file} does not name its model: pass --model")
    model = load_model(source, revision=None if model_source else index.revision)
    index.check_model(_model_id(source) if model_source else index.model_id, model.embedding_dim)
    calibration = model.calibration or {}
    results = []
    for query in queries:
        ranking = rank_in_index(
            index,
            model.encode(query)[0],
            top_k=max(top_k, 1),
            threshold=stored_gallery_threshold(calibration),
            caution_margin=calibration.get("caution_margin"),
        )
        matches = [
            {"rank": rank + 1, "label": match.label, "distance": match.distance, "path": index.paths[match.index]}
            for rank, match in enumerate(ranking.matches)
        ]
        results.append({"query": query, "matches": matches, "ranking": ranking})
    return results


def export_model(model_source: str, onnx: str | None, program: str | None, revision: str | None = None) -> list[str]:

    if not onnx and not program:
        raise CommandError("say what to write: --onnx FILE and/or --program FILE")
    model = load_model(model_source, revision=revision)
    written = []
    if onnx:
        export_onnx(model, onnx)
        written.append(onnx)
    if program:
        export_program(model, program)
        written.append(program)
    return written


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="siamese", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    embed = commands.add_parser("embed", help="embed every image under a folder into a gallery file")
    embed.add_argument("folder", help="images, in class sub-folders (label = folder) or named like alice_1.png")
    embed.add_argument("--model", required=True, help="model folder or Hub repo id")
    embed.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    embed.add_argument("--out", required=True, help="gallery file to write (.safetensors)")
    embed.add_argument("--batch-size", type=int, default=256)
    embed.add_argument("--device", default=None, help="cpu, cuda, ... (default cpu)")
    embed.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that decode the images (and find the faces, for a face model) while this one embeds "
        "them; default: one per CPU core; 0: everything in this process",
    )
    embed.add_argument("--no-progress", action="store_true")
    search = commands.add_parser("search", help="rank query images against a gallery file")
    search.add_argument("gallery", help="gallery file written by `siamese embed`")
    search.add_argument("queries", nargs="+", help="query image files")
    search.add_argument("--model", help="model folder or Hub repo id (default: the gallery's own)")
    search.add_argument("--top-k", type=int, default=5)
    export = commands.add_parser("export", help="export a model to ONNX or a torch.export program")
    export.add_argument("model", help="model folder or Hub repo id")
    export.add_argument("--revision")
    export.add_argument("--onnx", help="ONNX file to write (dynamic batch)")
    export.add_argument("--program", help="torch.export program to write (.pt2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:

    arguments = parse_arguments(argv)
    try:
        if arguments.command == "embed":
            index = embed_folder(
                arguments.folder,
                arguments.model,
                arguments.out,
                revision=arguments.revision,
                batch_size=arguments.batch_size,
                device=arguments.device,
                progress=not arguments.no_progress,
                workers=arguments.workers,
            )
            print(f"Wrote {arguments.out}: {len(index)} embeddings, {len(set(index.labels))} labels")
        elif arguments.command == "search":
            for result in search_gallery(arguments.gallery, arguments.queries, arguments.model, arguments.top_k):
                print(_format_result(result))
        else:
            for path in export_model(arguments.model, arguments.onnx, arguments.program, arguments.revision):
                print(f"Wrote {path}")
    except (CommandError, ModelLoadError, ImageError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _format_result(result: dict) -> str:
    ranking = result["ranking"]
    if not ranking.is_match:
        verdict = f"no match (nearest {ranking.best_distance:.4g} > threshold {ranking.threshold:.4g})"
    else:
        verdict = f"{ranking.best_label}" + (
            f" (caution: {ranking.runner_up_label} within the margin {ranking.caution_margin:.4g})"
            if ranking.caution
            else ""
        )
    lines = [f"{result['query']}: {verdict}"]
    lines += [f"  {m['rank']}. {m['label']}  d={m['distance']:.4f}  {m['path']}" for m in result["matches"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
