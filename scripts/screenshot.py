"""Take docs/screenshot.png: the real app with the bundled models, two drawn digits compared.

python scripts/screenshot.py            # needs Debian's chromium and the playwright package
"""

from __future__ import annotations

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


def main(out: Path = ROOT / "docs" / "screenshot.png") -> None:
    specs = [app.ModelSpec(name, str(folder)) for name, folder in app.BUNDLED_MODELS.items() if folder.is_dir()]
    demo = app.build_demo(specs)
    url = app.serve_in_background(demo)
    seven = [[(0.3, 0.25), (0.7, 0.25), (0.45, 0.8)]]
    other_seven = [[(0.35, 0.3), (0.68, 0.28), (0.5, 0.78)], [(0.45, 0.52), (0.62, 0.52)]]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_selector("#compare_button")
            draw(page, "pair_a_sketch", seven)
            draw(page, "pair_b_sketch", other_seven)
            page.wait_for_timeout(500)
            page.click("#compare_button")
            page.locator("#pair_verdict h2").wait_for()
            page.locator("#pair_plot .js-plotly-plot").wait_for()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out), full_page=True)
            print(page.locator("#pair_verdict").inner_text())
            browser.close()
    finally:
        demo.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
