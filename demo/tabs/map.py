"""The "Interactive t-SNE" tab: a map of reference embeddings, the user's images placed on it, clickable points."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from demo.examples import ExampleSets
from demo.handlers import SimilarityApp
from demo.inputs import QUIET

MAP_CONCURRENCY_LIMIT = 2  # t-SNE takes seconds of CPU: no more at once than before


@dataclass
class MapTab:
    points: gr.Slider
    perplexity: gr.Slider
    files: gr.File
    plot: gr.Plot
    note: gr.Markdown


def clear_map():
    """Every action first clears its outputs, so an error never sits beside an earlier result."""
    return None, "", None, ""


def build(app: SimilarityApp, model_name: gr.Dropdown, examples: ExampleSets) -> MapTab:
    with gr.Tab("Interactive t-SNE", elem_id="map_tab"), gr.Row():
        with gr.Column(scale=1):
            points = gr.Slider(100, 10_000, value=1000, step=100, label="Reference points", elem_id="map_points")
            perplexity = gr.Slider(5, 50, value=30, step=1, label="Perplexity", elem_id="map_perplexity")
            files = gr.File(
                label="Your images to place on the map",
                file_count="multiple",
                file_types=["image"],
                elem_id="map_files",
            )
            button = gr.Button("Draw map", variant="primary", elem_id="map_button")
            clickable = []
            with examples.column("digits", "digit_map_examples"):
                clickable.append(gr.Examples([[examples.digit_queries]], [files], label="Place example digits (click)"))
            if examples.faces is not None:
                with examples.column("faces", "face_map_examples"):
                    clickable.append(
                        gr.Examples([[examples.face_queries]], [files], label="Place example faces (click)")
                    )
            point_image = gr.Image(
                label="Clicked point", interactive=False, height=180, format="png", elem_id="map_point_image"
            )
            point_caption = gr.Markdown(elem_id="map_point_caption")
            # Written by the page's script (layout.PAGE_JS) when a point is clicked: gr.Plot has no click event.
            selection = gr.Textbox(visible="hidden", elem_id="map_selection")
        with gr.Column(scale=3):
            plot = gr.Plot(label="t-SNE of embeddings", elem_id="map_plot")
            note = gr.Markdown(elem_id="map_note")

    inputs = [model_name, points, perplexity, files]
    cleared = [plot, note, point_image, point_caption]
    for example_list in clickable:
        example_list.load_input_event.then(clear_map, None, cleared, **QUIET).then(
            app.embedding_map, inputs, [plot, note], api_name="example_map", api_visibility="private",
            show_progress="minimal", concurrency_limit=MAP_CONCURRENCY_LIMIT,
        )  # fmt: skip
    button.click(clear_map, None, cleared, **QUIET).then(
        app.embedding_map, inputs, [plot, note], api_name="embedding_map", show_progress="minimal",
        concurrency_limit=MAP_CONCURRENCY_LIMIT,
    )  # fmt: skip
    selection.change(
        app.map_point, [model_name, points, perplexity, selection, files], [point_image, point_caption], **QUIET
    )
    return MapTab(points, perplexity, files, plot, note)
