"""The real page in headless Chromium (Playwright): draw a digit, upload a gallery, render the t-SNE map.

Needs Debian's chromium at /usr/bin/chromium and the playwright package:
    apt-get install -y chromium && pip install playwright
Playwright's own browser download is not used.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
    pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)

import app  # noqa: E402
from scripts.standin_models import make_standin  # noqa: E402
from siamese import examples as example_data  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    demo = app.build_demo([app.ModelSpec("mnist", str(make_standin(folder / "mnist", "digits")))])
    yield app.serve_in_background(demo)
    demo.close()


@pytest.fixture(scope="module")
def page(server):
    with playwright_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except playwright_api.Error as error:
            pytest.skip(f"chromium did not start: {error}")
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server)
        page.wait_for_selector("#compare_button")
        yield page
        browser.close()


def draw_one(page, sketch_id: str) -> None:
    """Pick the brush and draw a vertical stroke (a "1") with mouse moves on the sketchpad's canvas."""
    page.locator(f"#{sketch_id} button[aria-label='Brush']").click()
    canvas = page.locator(f"#{sketch_id} canvas").last
    box = canvas.bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] * 0.25)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x + step * 0.5, box["y"] + box["height"] * (0.25 + 0.5 * step / 20))
    page.mouse.up()


def test_drawn_digits_are_compared(page):
    draw_one(page, "pair_a_sketch")
    draw_one(page, "pair_b_sketch")
    page.wait_for_timeout(500)  # the editor commits the stroke to its value asynchronously
    page.click("#compare_button")
    verdict = page.locator("#pair_verdict")
    verdict.locator("h2").wait_for()
    assert verdict.inner_text().split()[0] in {"Same", "Different"}
    page.locator("#pair_plot .js-plotly-plot").wait_for()


def test_uploaded_gallery_is_built_and_ranked(page, tmp_path):
    digits = example_data.load_digits()
    files = []
    for digit in (0, 1, 7):
        for position, index in enumerate(np.nonzero(digits.labels.numpy() == digit)[0][:2]):
            path = tmp_path / f"{digit}_{position + 1}.png"
            Image.fromarray(digits.images[index, 0].numpy()).save(path)
            files.append(str(path))
    page.get_by_role("tab", name="One-shot gallery").click()
    page.locator("#gallery_files input[type=file]").set_input_files(files)
    page.wait_for_timeout(500)
    page.click("#build_gallery_button")
    page.locator("#gallery_status", has_text="6** images").or_(
        page.locator("#gallery_status", has_text="6 images")
    ).wait_for()
    assert "3" in page.locator("#gallery_status").inner_text()
    page.locator("#gallery_tab").get_by_role("tab", name="Upload").click()
    page.locator("#query_upload input[type=file]").set_input_files(files[2])
    page.wait_for_timeout(500)
    page.click("#rank_button")
    page.locator("#rank_verdict h2").wait_for()
    assert page.locator("#rank_table").inner_text().count("png") >= 1


def test_tsne_map_renders(page):
    page.get_by_role("tab", name="Interactive t-SNE").click()
    number = page.locator("#map_points input[type=number]")
    number.fill("200")
    number.press("Enter")
    page.click("#map_button")
    page.locator("#map_plot .js-plotly-plot svg.main-svg").first.wait_for()
    assert page.locator("#map_plot .scatterlayer .trace").count() >= 10
    assert "Reference set" in page.locator("#map_note").inner_text()
