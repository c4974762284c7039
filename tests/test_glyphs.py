"""The synthetic glyph data set: many classes in groups, every glyph really drawn, reproducible."""

from __future__ import annotations

import numpy as np
from PIL import Image

from siamese.data.folders import load_image_folder
from siamese.data.glyphs import GROUPS, font_files, glyph_classes, render_sample, write_glyphs


def test_every_group_has_real_glyphs_and_the_set_has_hundreds_of_classes():
    classes = glyph_classes()
    assert set(classes) == set(GROUPS)
    assert all(len(points) >= 10 for points in classes.values())
    assert sum(len(points) for points in classes.values()) >= 300


def test_samples_are_dark_ink_on_light_paper_and_differ_between_classes():
    rng = np.random.default_rng(0)
    fonts = font_files()
    letter_a = render_sample(ord("A"), rng, fonts)
    assert letter_a.shape == (64, 64) and letter_a.dtype == np.uint8
    border = np.concatenate([letter_a[0], letter_a[-1], letter_a[:, 0], letter_a[:, -1]])
    assert np.median(border) > 150 and letter_a.min() < 120  # light paper, dark ink


def test_the_folder_is_reproducible_and_loads_as_nested_classes(tmp_path):
    write_glyphs(tmp_path / "one", samples_per_class=2, seed=3)
    write_glyphs(tmp_path / "two", samples_per_class=2, seed=3)
    first = sorted(path.relative_to(tmp_path / "one") for path in (tmp_path / "one").rglob("*.png"))
    assert first == sorted(path.relative_to(tmp_path / "two") for path in (tmp_path / "two").rglob("*.png"))
    sample = first[0]
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "one" / sample)), np.asarray(Image.open(tmp_path / "two" / sample))
    )
    data = load_image_folder(tmp_path / "one", {"kind": "folder", "size": [32, 32], "grayscale": True}, class_depth=2)
    assert "latin_capital/U+0041" in data.class_names and len(data) == 2 * len(data.class_names)
