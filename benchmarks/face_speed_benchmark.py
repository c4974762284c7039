"""Speed of the face step on this CPU: detection, alignment and embedding per photo, a pair verdict, a folder.

Uses the ported dlib descriptor (`siamese.modeling.face_port`) and the photos of `real_faces/people`:
- per photo, at 1 and 12 megapixels (a portrait scaled to that size): finding and aligning the largest face,
  and embedding its chip (medians of --repeats runs);
- a pair verdict for two 1-megapixel photos, server side: `model.verify(path_a, path_b)` from the files
  (decoding, both face steps, both embeddings, the verdict);
- `siamese embed` of a folder of 1,000 face photos (the 12 shared photos, each copied with small random crops
  and mirror images, JPEG, at their own sizes), written to a temporary folder that is removed afterwards
  unless --keep. As the command does, --workers processes (default: one per CPU core) decode the photos and
  find their faces while the main process embeds the chips.

  python benchmarks/face_speed_benchmark.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from siamese.cli import embed_folder  # noqa: E402
from siamese.data.images import find_face  # noqa: E402
from siamese.modeling.face_port import convert_dlib_model  # noqa: E402
from siamese.modeling.pretrained import load_model  # noqa: E402


def median_seconds(call, repeats: int) -> float:
    call()  # warm-up: the detector and the landmark model load on first use
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def scaled(image: Image.Image, megapixels: float) -> Image.Image:
    factor = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.BICUBIC)


def write_face_folder(photos: list[Path], folder: Path, count: int, seed: int = 0) -> None:
    """`count` JPEGs, one sub-folder per person: each a shared photo, randomly cropped by up to 5% a side and
    mirrored half the time, so that no two files are the same bytes."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        photo = photos[index % len(photos)]
        with Image.open(photo) as opened:
            image = opened.convert("RGB")
        width, height = image.size
        left, top = (int(rng.uniform(0, 0.05) * side) for side in (width, height))
        right, bottom = (side - int(rng.uniform(0, 0.05) * side) for side in (width, height))
        image = image.crop((left, top, right, bottom))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        person = folder / photo.parent.name
        person.mkdir(parents=True, exist_ok=True)
        image.save(person / f"{index:04d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--photos", type=int, default=1000, help="photos in the folder that siamese embed reads")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="siamese embed's --workers (default: one per core)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder of photos and the model")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    photos = sorted((Path(arguments.data_root) / "real_faces" / "people").glob("*/*"))
    work = Path(tempfile.mkdtemp(prefix="siamese-face-speed-"))
    try:
        model_folder = convert_dlib_model(work / "model")
        model = load_model(model_folder)
        print(f"CPU, {arguments.threads} threads, torch {torch.__version__}")
        portrait = Image.open(photos[0]).convert("RGB")
        for megapixels in (1, 12):
            path = work / f"portrait_{megapixels}mp.jpg"
            scaled(portrait, megapixels).save(path, quality=92)
            found = find_face(str(path))
            chip = torch.from_numpy(found.chip.copy()).permute(2, 0, 1)[None]  # (1, 3, 150, 150)
            face_step = median_seconds(lambda path=path: find_face(str(path)), arguments.repeats)
            embed = median_seconds(lambda chip=chip: model.encode(chip), arguments.repeats)
            print(
                f"{megapixels:>2} MP photo: decode + detect + align {face_step * 1000:.0f} ms, embed "
                f"{embed * 1000:.0f} ms, total {(face_step + embed) * 1000:.0f} ms"
            )
        first, second = (work / f"pair_{index}.jpg" for index in (0, 1))
        scaled(Image.open(photos[0]).convert("RGB"), 1).save(first, quality=92)
        scaled(Image.open(photos[1]).convert("RGB"), 1).save(second, quality=92)
        pair = median_seconds(lambda: model.verify(str(first), str(second)), arguments.repeats)
        print(f"pair verdict, two 1 MP photos (server side, from the files): {pair * 1000:.0f} ms")

        folder = work / "photos"
        write_face_folder(photos, folder, arguments.photos)
        sizes = [Image.open(path).size for path in sorted(folder.rglob("*.jpg"))[:50]]
        mean_megapixels = sum(width * height for width, height in sizes) / len(sizes) / 1e6
        started = time.perf_counter()
        embed_folder(folder, str(model_folder), work / "photos.safetensors", progress=False, workers=arguments.workers)
        seconds = time.perf_counter() - started
        workers = os.cpu_count() if arguments.workers is None else arguments.workers
        print(
            f"siamese embed of {arguments.photos} face photos (about {mean_megapixels:.1f} MP each), {workers} "
            f"worker processes: {seconds:.1f} s ({arguments.photos / seconds:.1f} photos/s)"
        )
    finally:
        if arguments.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
