"""Take the README's screenshots of the real app with the bundled models, in headless Chromium.

docs/screenshot.png: the faces model's one-shot gallery (one photo of each unseen person) ranking a
face query. docs/screenshot_pair.png: two drawn digits compared with the MNIST model.

python scripts/screenshot.py --faces-root ../shared/data/att_faces   # needs chromium and playwright

The faces gallery needs the AT&T faces on disk (--faces-root or $SIAMESE_FACES_ROOT); no photo is
stored in this repository.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402


def draw(page, sketch_id: str, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes given in fractions of the canvas, with real mouse moves."""
    page.locator(f"#{sketch_id} button[aria-label='Brush']").click()
    box = page.locator(f"#{sketch_id} canvas").last.bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for start, end in zip(points, points[1:], strict=False):
            for step in range(1, 9):
                page.mouse.move(start[0] + (end[0] - start[0]) * step / 8, start[1] + (end[1] - start[1]) * step / 8)
        page.mouse.up()


def pair_screenshot(page, out: Path) -> None:
    seven = [[(0.3, 0.25), (0.7, 0.25), (0.45, 0.8)]]
    other_seven = [[(0.35, 0.3), (0.68, 0.28), (0.5, 0.78)], [(0.45, 0.52), (0.62, 0.52)]]
    draw(page, "pair_a_sketch", seven)
    draw(page, "pair_b_sketch", other_seven)
    page.wait_for_timeout(500)
    page.click("#compare_button")
    page.locator("#pair_verdict h2").wait_for()
    page.locator("#pair_plot .js-plotly-plot").wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(out), full_page=True)
    print(page.locator("#pair_verdict").inner_text())


def gallery_screenshot(page, out: Path) -> None:
    """Pick the faces model, load its example gallery (one photo per unseen person), rank a face query."""
    page.locator("#model_picker input").click()
    page.get_by_role("option", name="faces").click()
    page.get_by_role("tab", name="One-shot gallery").click()
    page.locator("#face_query_examples").wait_for(state="visible")
    page.locator("#example_kind").get_by_text("faces").click()
    page.click("#load_example_gallery_button")
    page.locator("#gallery_status", has_text="images").wait_for()
    # s37's gallery photo has no face dlib finds (it is skipped with a warning): a person the gallery holds.
    page.locator("#face_query_examples").get_by_role("button", name="s38").click()
    page.locator("#rank_verdict h2").wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out), full_page=True)
    print(page.locator("#rank_verdict").inner_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces-root", default=os.environ.get("SIAMESE_FACES_ROOT"), help="the AT&T faces folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    arguments = parser.parse_args()
    if not arguments.faces_root:
        raise SystemExit("the faces gallery needs the AT&T faces: pass --faces-root or set SIAMESE_FACES_ROOT")
    specs = [app.ModelSpec(name, str(folder)) for name, folder in app.BUNDLED_MODELS.items() if folder.is_dir()]
    demo = app.build_demo(specs, faces_root=arguments.faces_root)
    url = app.serve_in_background(demo)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            for shoot, name in ((pair_screenshot, "screenshot_pair.png"), (gallery_screenshot, "screenshot.png")):
                page = browser.new_page(viewport={"width": 1280, "height": 1100})
                page.set_default_timeout(60_000)
                page.goto(url)
                page.wait_for_selector("#compare_button")
                shoot(page, arguments.out / name)
                print(f"wrote {arguments.out / name}")
                page.close()
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
