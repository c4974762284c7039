"""Synthetic glyphs: a data set with many small classes and a group level, made from fonts on disk.

Each class is one character, each group a script or symbol block (Latin capitals, Greek small
letters, arrows, ...). Every sample is drawn with a random DejaVu font (the ones matplotlib
ships), size, slant, stroke weight and position, with random pen strokes and noise, dark on light.
Nothing is downloaded; the same seed gives the same images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Unicode puts the small letters of these alphabets 0x20 after their capitals.
_CASE_OFFSET = 0x20


def _alphabet(name: str, first_capital: int, last_capital: int) -> dict[str, tuple[int, int]]:
    """An alphabet's capitals and small letters, as two groups."""
    return {
        f"{name}_capital": (first_capital, last_capital),
        f"{name}_small": (first_capital + _CASE_OFFSET, last_capital + _CASE_OFFSET),
    }


# group -> (first code point, last code point), inclusive; every one drawn by DejaVu Sans. The order matters: a
# group's place seeds its samples.
GROUPS = {
    **_alphabet("latin", 0x0041, 0x005A),
    "digits": (0x0030, 0x0039),
    **_alphabet("greek", 0x0391, 0x03A9),
    **_alphabet("cyrillic", 0x0410, 0x042F),
    "armenian_capital": (0x0531, 0x0556),
    "latin_accented": (0x00C0, 0x00FF),
    "geometric_shapes": (0x25A0, 0x25CF),
    "arrows": (0x2190, 0x21A9),
    "math_operators": (0x2200, 0x222B),
}
IMAGE_SIDE = 64


def font_files() -> list[Path]:
    """The DejaVu fonts matplotlib ships (Sans, Serif, Mono; regular, bold, oblique)."""
    # Start-up time: matplotlib is needed only to find its bundled fonts.
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = sorted(path for path in folder.glob("DejaVu*.ttf") if "Display" not in path.name)
    if not fonts:
        raise FileNotFoundError(f"no DejaVu fonts in {folder}: matplotlib's font files are missing")
    return fonts


def _drawable(code_point: int, font) -> bool:
    """True when the font has a real glyph (not the empty or 'missing glyph' box) for the character."""
    mask = font.getmask(chr(code_point))
    if mask.size[0] == 0 or mask.size[1] == 0:
        return False
    missing = font.getmask("\uffff")  # a code point no font draws: its box is the missing-glyph shape
    return bytes(mask) != bytes(missing) or mask.size != missing.size


def glyph_classes(size: int = 40) -> dict[str, list[int]]:
    """group -> the code points every font draws (so no class mixes real glyphs and placeholder boxes)."""
    fonts = [ImageFont.truetype(str(path), size) for path in font_files()]
    return {
        group: [point for point in range(first, last + 1) if all(_drawable(point, font) for font in fonts)]
        for group, (first, last) in GROUPS.items()
    }


def render_sample(code_point: int, rng: np.random.Generator, fonts: list[Path]) -> np.ndarray:
    """One 64x64 uint8 image of the character, dark ink on light paper, randomly styled."""
    size = int(rng.integers(30, 46))
    font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), size)
    canvas = Image.new("L", (IMAGE_SIDE * 2, IMAGE_SIDE * 2), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = int(rng.integers(0, 3))
    draw.text((IMAGE_SIDE, IMAGE_SIDE), chr(code_point), fill=255, font=font, anchor="mm", stroke_width=stroke,
              stroke_fill=255)  # fmt: skip
    canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    shift = rng.integers(-5, 6, size=2)
    left, top = IMAGE_SIDE // 2 + int(shift[0]), IMAGE_SIDE // 2 + int(shift[1])
    ink = canvas.crop((left, top, left + IMAGE_SIDE, top + IMAGE_SIDE))
    draw = ImageDraw.Draw(ink)
    for _ in range(int(rng.integers(0, 3))):  # stray pen strokes
        points = [tuple(int(value) for value in rng.integers(0, IMAGE_SIDE, size=2)) for _ in range(2)]
        draw.line(points, fill=int(rng.integers(120, 256)), width=int(rng.integers(1, 3)))
    if rng.random() < 0.5:
        ink = ink.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    paper, pen = float(rng.uniform(200, 255)), float(rng.uniform(0, 70))
    alpha = np.asarray(ink, dtype=np.float64) / 255.0  # (64, 64) ink coverage
    pixels = paper * (1 - alpha) + pen * alpha + rng.normal(0, 6, alpha.shape)
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


def write_glyphs(out: str | Path, samples_per_class: int = 20, seed: int = 0) -> dict[str, int]:
    """Write OUT/<group>/U+XXXX/NN.png; returns group -> class count. Classes are named by code point."""
    out = Path(out)
    fonts = font_files()
    counts = {}
    for group_index, (group, points) in enumerate(glyph_classes().items()):
        for point in points:
            folder = out / group / f"U+{point:04X}"
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, group_index, point])  # each class reproducible on its own
            for index in range(samples_per_class):
                path = folder / f"{index:02d}.png"
                temporary = path.with_name(f".{path.name}.tmp.png")
                Image.fromarray(render_sample(point, rng, fonts)).save(temporary)
                os.replace(temporary, path)
        counts[group] = len(points)
    return counts
