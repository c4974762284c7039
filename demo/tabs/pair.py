"""The "Pair similarity" tab: two images, drawn or uploaded, compared with a verdict and a distance plot."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from demo.examples import USE_EXAMPLES_JS, ExampleSets, pair_examples, show_upload_tabs
from demo.handlers import SimilarityApp
from demo.inputs import QUIET, ImageInput, image_input


@dataclass
class PairTab:
    side_a: ImageInput
    side_b: ImageInput
    outputs: list  # verdict, details, plot, preview


def clear_pair():
    """Every action first clears its outputs, so an error never sits beside an earlier result."""
    return "", None, None, None


def build(app: SimilarityApp, model_name: gr.Dropdown, examples: ExampleSets) -> PairTab:
    with gr.Tab("Pair similarity", elem_id="pair_tab"):
        with gr.Row():
            with gr.Column():
                side_a = image_input(app, "pair_a", "Image A", "image A")
            with gr.Column():
                side_b = image_input(app, "pair_b", "Image B", "image B")
        compare_button = gr.Button("Compare", variant="primary", elem_id="compare_button")
        with gr.Row():
            with gr.Column():
                verdict = gr.Markdown(elem_id="pair_verdict")
                preview = gr.Image(label="What the model sees", interactive=False, format="png", elem_id="pair_preview")
                details = gr.JSON(label="Details", elem_id="pair_details")
            plot = gr.Plot(label="Distance distributions", elem_id="pair_plot")
        uploads = [side_a.upload, side_b.upload]
        clickable = []
        with examples.column("digits", "digit_pair_examples"):
            clickable.append(pair_examples(examples.digits, uploads, "Digit pairs (click)"))
        if examples.faces is not None:
            with examples.column("faces", "face_pair_examples"):
                clickable.append(pair_examples(examples.faces, uploads, "Face pairs (click)"))
        # The public API keeps its shape (model, drawing A, upload A, drawing B, upload B): the page's hidden "which
        # input is in use" fields are the page's own, so API calls go through a hidden button that leaves them out
        # (a given upload then wins over a drawing).
        api_compare = gr.Button(visible=False, elem_id="api_compare_pair")

    inputs = [model_name, side_a.drawing, side_a.upload, side_b.drawing, side_b.upload, side_a.choice, side_b.choice]
    outputs = [verdict, details, plot, preview]
    choices = [side_a.choice, side_a.using, side_b.choice, side_b.using]
    # Clicking an example fills the inputs, shows them, and then runs the tab's action like its button.
    for example_list in clickable:
        example_list.load_input_event.then(None, uploads, choices, js=USE_EXAMPLES_JS, **QUIET).then(
            show_upload_tabs, uploads, [side_a.tabs, side_b.tabs], queue=False, **QUIET
        ).then(clear_pair, None, outputs, **QUIET).then(
            app.compare_pair, inputs, outputs, api_name="example_pair", api_visibility="private",
            show_progress="minimal",
        )  # fmt: skip
    # "minimal" progress shows the time elapsed and no estimate: gradio's estimate is an average over earlier
    # calls, which misleads when one map is cached and the next is not.
    compare_button.click(clear_pair, None, outputs, **QUIET).then(
        app.compare_pair, inputs, outputs, api_name="compare_pair_page", api_visibility="private",
        show_progress="minimal",
    )  # fmt: skip
    api_compare.click(app.compare_pair, inputs[:5], outputs, api_name="compare_pair")
    return PairTab(side_a, side_b, outputs)
