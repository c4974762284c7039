"""Write a seeded synthetic image folder (one sub-folder per class) for the streaming benchmark.

Each class has its own shape, colour and background tint; each image moves, scales and rotates
the shape a little and adds pixel noise. The folder is generated, never committed:

    python scripts/make_synthetic_folder.py /tmp/synthetic_100k --images 100000 --classes 1000 --size 64
"""

from __future__ import annotations

import argparse
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")


def class_style(seed: int, class_index: int) -> dict:
    """The fixed look of one class, drawn from its own seeded stream."""
    generator = np.random.default_rng([seed, class_index])
    return {
        "shape": SHAPES[class_index % len(SHAPES)],
        "colour": tuple(int(value) for value in generator.integers(40, 256, size=3)),
        "background": tuple(int(value) for value in generator.integers(0, 90, size=3)),
        "scale": float(generator.uniform(0.25, 0.45)),
    }


def draw_image(style: dict, size: int, generator: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (size, size), style["background"])
    draw = ImageDraw.Draw(image)
    radius = size * style["scale"] * generator.uniform(0.8, 1.2)
    centre_x, centre_y = size / 2 + generator.uniform(-0.15, 0.15, size=2) * size
    angle = generator.uniform(0, 2 * math.pi)
    if style["shape"] in ("circle", "ring"):
        box = (centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius)
        draw.ellipse(box, fill=None if style["shape"] == "ring" else style["colour"], outline=style["colour"], width=4)
    elif style["shape"] == "cross":
        for turn in (0.0, math.pi / 2):
            dx, dy = radius * math.cos(angle + turn), radius * math.sin(angle + turn)
            draw.line((centre_x - dx, centre_y - dy, centre_x + dx, centre_y + dy), fill=style["colour"], width=5)
    else:
        corners = {"square": 4, "triangle": 3, "diamond": 4}[style["shape"]]
        offset = angle + (math.pi / 4 if style["shape"] == "diamond" else 0.0)
        points = [
            (
                centre_x + radius * math.cos(offset + 2 * math.pi * corner / corners),
                centre_y + radius * math.sin(offset + 2 * math.pi * corner / corners),
            )
            for corner in range(corners)
        ]
        draw.polygon(points, fill=style["colour"])
    pixels = np.asarray(image, dtype=np.int16) + generator.integers(-25, 26, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_class(out: str, seed: int, class_index: int, count: int, size: int) -> int:
    folder = Path(out) / f"class_{class_index:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    style = class_style(seed, class_index)
    generator = np.random.default_rng([seed, class_index, 1])
    for image_index in range(count):
        draw_image(style, size, generator).save(folder / f"{image_index:06d}.png", compress_level=1)
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to create (must not exist yet)")
    parser.add_argument("--images", type=int, default=10_000, help="total images, spread evenly over the classes")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="side of the square images in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    arguments = parser.parse_args(argv)
    if arguments.classes < 2 or arguments.images < 2 * arguments.classes:
        parser.error(f"need at least 2 classes and 2 images per class, got {arguments.classes} and {arguments.images}")
    if arguments.out.exists():
        parser.error(f"{arguments.out} already exists; remove it or choose another folder")
    counts = [arguments.images // arguments.classes] * arguments.classes
    for class_index in range(arguments.images % arguments.classes):
        counts[class_index] += 1
    classes = arguments.classes
    with ProcessPoolExecutor(max_workers=max(1, arguments.workers)) as pool:
        written = sum(
            pool.map(
                write_class,
                [str(arguments.out)] * classes,
                [arguments.seed] * classes,
                range(classes),
                counts,
                [arguments.size] * classes,
                chunksize=8,
            )
        )
    print(f"wrote {written} images in {classes} classes to {arguments.out}")


if __name__ == "__main__":
    main()
