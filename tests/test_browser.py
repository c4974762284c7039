"""The real page in headless Chromium (Playwright), serving the bundled models as `python app.py` does:
draw digits, click an example and then draw, upload a gallery, render the t-SNE map. Each check names
the verdict the bundled MNIST model must give.

Needs Debian's chromium at /usr/bin/chromium and the playwright package:
    apt-get install -y chromium && pip install playwright
Playwright's own browser download is not used.
"""

from __future__ import annotations

import math
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
from siamese.data import examples as example_data  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server():
    assert app.BUNDLED_MODELS["mnist"].is_dir(), "the bundled MNIST model is part of the repository"
    demo = app.build_demo()  # the bundled models, the MNIST one first, as `python app.py` serves them
    yield app.serve_in_background(demo)
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except playwright_api.Error as error:
            pytest.skip(f"chromium did not start: {error}")
        yield browser
        browser.close()


@pytest.fixture
def page(server, browser):
    """A fresh page (a new session) for each test, so no test sees another's inputs or answers."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server)
    page.wait_for_selector("#compare_button")
    yield page
    page.close()


def draw(page, sketch_id: str, shape: str = "one") -> None:
    """Draw with mouse moves on the sketchpad's canvas: a vertical stroke ("one") or a closed loop ("zero")."""
    page.locator(f"#{sketch_id} button[aria-label='Brush']").click()
    canvas = page.locator(f"#{sketch_id} canvas").last
    box = canvas.bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    if shape == "one":
        points = [(centre_x + step * 0.5, box["y"] + box["height"] * (0.25 + 0.5 * step / 20)) for step in range(21)]
    else:
        radius_x, radius_y = box["width"] * 0.18, box["height"] * 0.27
        points = [
            (
                centre_x + radius_x * math.sin(2 * math.pi * step / 36),
                centre_y - radius_y * math.cos(2 * math.pi * step / 36),
            )
            for step in range(38)
        ]
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point)
    page.mouse.up()


def clear_drawing(page, sketch_id: str) -> None:
    page.locator(f"#{sketch_id} button[aria-label='Clear canvas']").click()


def wait_for_new_verdict(page, selector: str, previous: str) -> str:
    """The verdict's first word, once the answer on the page differs from `previous` (the old answer)."""
    # Done when: a heading is there, the text changed, and no progress timer is showing (while the request
    # runs, the old answer stays on screen with a timer beside it).
    page.wait_for_function(
        "([selector, previous]) => { const block = document.querySelector(selector);"
        " const busy = block.querySelector('.progress-text, .eta-bar, .progress-level') !== null"
        "   || block.closest('.block')?.querySelector('.pending, .generating') != null;"
        " return !busy && block.querySelector('h2') !== null && block.innerText !== previous; }",
        arg=[selector, previous],
    )
    return page.locator(f"{selector} h2").inner_text().split()[0]


def compare_and_read_verdict(page) -> str:
    """Press Compare and return the verdict's first word once the new answer is on the page."""
    previous = page.locator("#pair_verdict").inner_text()
    page.click("#compare_button")
    return wait_for_new_verdict(page, "#pair_verdict", previous)


def test_drawn_digits_are_compared_with_the_expected_verdicts(page):
    draw(page, "pair_a_sketch", "one")
    draw(page, "pair_b_sketch", "one")
    page.wait_for_timeout(500)  # the editor commits the stroke to its value asynchronously
    assert compare_and_read_verdict(page) == "Same"  # the same stroke on both pads
    page.locator("#pair_plot .js-plotly-plot").wait_for()
    clear_drawing(page, "pair_b_sketch")
    draw(page, "pair_b_sketch", "zero")
    page.wait_for_timeout(500)
    assert compare_and_read_verdict(page) == "Different"  # a one against a zero
    assert "drawing" in page.locator("#pair_a_using").inner_text()
    assert "drawing" in page.locator("#pair_b_using").inner_text()


def test_drawing_after_an_example_compares_the_drawings(page):
    """An example fills the Upload tabs; drawing afterwards must make the drawings win on both sides."""
    page.locator("#digit_pair_examples").get_by_role("button").nth(1).click()  # a pair of different digits
    assert wait_for_new_verdict(page, "#pair_verdict", "") == "Different"
    assert "example" in page.locator("#pair_b_using").inner_text()
    for side in ("pair_a", "pair_b"):
        page.locator(f"#{side}_tabs").get_by_role("tab", name="Draw").click()
        clear_drawing(page, f"{side}_sketch")
        draw(page, f"{side}_sketch", "one")
    page.wait_for_timeout(500)
    assert compare_and_read_verdict(page) == "Same"
    assert "drawing" in page.locator("#pair_a_using").inner_text()
    assert "drawing" in page.locator("#pair_b_using").inner_text()


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
    previous = page.locator("#rank_verdict").inner_text()
    page.click("#rank_button")
    # The query is gallery image 1_1.png itself: the bundled model must name label 1, from that very image.
    assert wait_for_new_verdict(page, "#rank_verdict", previous) == "1"
    assert "Nearest reference 1_1.png at distance 0" in page.locator("#rank_verdict").inner_text()
    assert page.locator("#rank_table").inner_text().count("png") >= 1


def test_a_query_example_is_ranked_against_the_example_gallery(page):
    """Clicking a digit query example fills the query's Upload tab (a one-output update) and ranks it."""
    page.get_by_role("tab", name="One-shot gallery").click()
    page.locator("#example_kind").get_by_text("digits").click()
    page.click("#load_example_gallery_button")
    page.locator("#gallery_status", has_text="images").wait_for()
    previous = page.locator("#rank_verdict").inner_text()
    page.locator("#digit_query_examples").get_by_role("button").first.click()
    verdict = wait_for_new_verdict(page, "#rank_verdict", previous)
    assert verdict.isdigit() or verdict == "No match", verdict
    assert "example" in page.locator("#query_using").inner_text()


def test_tsne_map_renders(page):
    page.get_by_role("tab", name="Interactive t-SNE").click()
    number = page.locator("#map_points input[type=number]")
    number.fill("200")
    number.press("Enter")
    page.click("#map_button")
    page.locator("#map_plot .js-plotly-plot svg.main-svg").first.wait_for()
    assert page.locator("#map_plot .scatterlayer .trace").count() >= 10
    assert "Reference set" in page.locator("#map_note").inner_text()


def upload(page, prefix: str, path: str) -> None:
    """Upload `path` into a slot's Upload tab, clearing the file already there, and wait for the page to say so."""
    page.locator(f"#{prefix}_tabs").get_by_role("tab", name="Upload").click()
    clear = page.locator(f"#{prefix}_upload button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator(f"#{prefix}_upload input[type=file]").set_input_files(path)
    page.locator(f"#{prefix}_using", has_text=Path(path).name).wait_for()


def test_real_photos_are_compared_with_the_faces_model(page, real_faces_root, noise_photo):
    """Two photos of one person are the same, of two people different, and a noise image has no face: a message,
    with no verdict. The photos are in ../shared/data/real_faces (the test skips without them)."""
    people = real_faces_root / "people"
    page.locator("#model_picker input").click()
    page.get_by_role("option", name="faces").click()
    page.locator("#face_pair_examples").wait_for()  # shown once the page has switched to the faces model
    upload(page, "pair_a", str(people / "obama" / "obama.jpg"))
    upload(page, "pair_b", str(people / "obama" / "obama2.jpg"))
    assert compare_and_read_verdict(page) == "Same"
    upload(page, "pair_b", str(people / "biden" / "biden.jpg"))
    assert compare_and_read_verdict(page) == "Different"
    upload(page, "pair_a", str(noise_photo))
    page.click("#compare_button")
    page.get_by_text("No face found in image A").first.wait_for()
    assert page.locator("#pair_verdict h2").count() == 0  # no verdict beside the message
