"""The page: the model picker, then one `build` per tab, and the script the page runs."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from demo.examples import ExampleSets
from demo.handlers import SimilarityApp
from demo.media import LIMITS, register_preview_folder
from demo.server import bundled_specs, guard_temp_file_sets
from demo.tabs import gallery as gallery_tab
from demo.tabs import map as map_tab
from demo.tabs import model as model_part
from demo.tabs import pair as pair_tab
from siamese.serving import ModelSpec

# Runs once in the page, checking twice a second:
# - each drawing pad that is on screen gets its brush picked once, so drawing works without choosing the brush
#   first (gr.Sketchpad starts with no tool and has no option for a starting tool);
# - a click on a map point writes "reference:<index>" or "yours:<position>" into the hidden #map_selection box,
#   whose change event fetches the point's image (gr.Plot has no click or select event of its own).
PAGE_JS = """
() => {
  const pickBrushes = () => {
    for (const pad of document.querySelectorAll('.sketchpad-input')) {
      const brush = pad.querySelector("button[aria-label='Brush']");
      if (!brush || pad.dataset.brushPicked || pad.offsetParent === null) continue;
      brush.click();
      pad.dataset.brushPicked = 'yes';
    }
  };
  const listenToMapClicks = () => {
    const plot = document.querySelector('#map_plot .js-plotly-plot');
    if (!plot || !plot.on || !plot._ev || plot._ev.listeners('plotly_click').length > 0) return;
    plot.on('plotly_click', (event) => {
      const point = event.points[0];
      const yours = point.data.name === 'your images';
      const value = yours ? `yours:${point.pointIndex}` : `reference:${point.customdata[1]}`;
      const box = document.querySelector('#map_selection textarea, #map_selection input');
      if (!box) return;
      box.value = value;
      box.dispatchEvent(new Event('input', {bubbles: true}));
    });
  };
  setInterval(() => { pickBrushes(); listenToMapClicks(); }, 500);
}
"""


def build_demo(
    specs: list[ModelSpec] | None = None,
    mnist_root: str | None = None,
    faces_root: str | None = None,
    download_faces: bool = False,
    app: SimilarityApp | None = None,
) -> gr.Blocks:
    """The page: model picker and notes, three tabs, examples. `specs` defaults to the bundled models."""
    if app is None:
        missing: dict[str, Path] = {}
        if specs is None:
            specs, missing = bundled_specs()
        app = SimilarityApp(specs, mnist_root, faces_root, download_faces, missing)
    names = app.registry.names
    show_digits, show_faces = app.example_visibility(names[0] if names else None)
    examples = ExampleSets.load(app.service.references, show_digits, show_faces)
    register_preview_folder()
    # Gradio removes uploads and its copies of outputs older than the age, checked every quarter of it.
    with gr.Blocks(title="Siamese image similarity", delete_cache=LIMITS.cache_schedule) as demo:
        picker = model_part.build(app, examples)
        pair_tab.build(app, picker.picker, examples)
        gallery = gallery_tab.build(app, picker.picker, examples)
        map_tab.build(app, picker.picker, examples)
        model_part.wire(app, picker, examples, gallery.example_kind)
        demo.load(app.model_info, picker.picker, picker.about, api_visibility="private")
        demo.load(None, None, None, js=PAGE_JS)
    guard_temp_file_sets(demo)
    demo.siamese_app = app  # tests and benchmarks reach the handlers through the demo
    return demo
