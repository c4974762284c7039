"""The "One-shot gallery" tab: a gallery built from uploads, examples or a saved file, then queries ranked on it."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from demo.examples import USE_EXAMPLES_JS, ExampleSets, file_examples, show_upload_tabs
from demo.handlers import SimilarityApp
from demo.inputs import QUIET, ImageInput, image_input


@dataclass
class GalleryPanel:
    """The gallery's sources (uploads and labels, examples, a saved file), their buttons, and what it holds."""

    state: gr.State
    files: gr.File
    captions: gr.Textbox
    build_button: gr.Button
    example_kind: gr.Radio
    per_label: gr.Slider
    example_button: gr.Button
    saved_file: gr.File
    saved_button: gr.Button
    status: gr.Markdown
    preview: gr.Gallery

    @property
    def outputs(self) -> list:
        return [self.state, self.status, self.preview]


@dataclass
class QueryPanel:
    """A query image, how many matches to show, and the ranking."""

    query: ImageInput
    top_k: gr.Slider
    rank_button: gr.Button
    verdict: gr.Markdown
    table: gr.Dataframe
    matches: gr.Gallery
    faces: gr.Image  # a face model's query photo, every face boxed and named


@dataclass
class GalleryTab:
    gallery: GalleryPanel
    query: QueryPanel
    example_kind: gr.Radio  # follows the model picker's domain


def clear_gallery():
    """Every action first clears its outputs, so an error never sits beside an earlier result."""
    return None, "No gallery yet.", None


def clear_rank(state):
    return state, "", None, None, None


def build(app: SimilarityApp, model_name: gr.Dropdown, examples: ExampleSets) -> GalleryTab:
    with gr.Tab("One-shot gallery", elem_id="gallery_tab"):
        gallery = gallery_panel(app, examples)
        query = query_panel(app)
        clickable = []
        with examples.column("digits", "digit_query_examples"):
            clickable.append(file_examples(examples.digit_queries, query.query.upload, "Digit queries (click to rank)"))
        if examples.faces is not None:
            with examples.column("faces", "face_query_examples"):
                clickable.append(
                    file_examples(examples.face_queries, query.query.upload, "Face queries (click to rank)")
                )
        # The public API keeps its shape (model, state, drawing, upload, top_k): see the pair tab's hidden button.
        api_rank = gr.Button(visible=False, elem_id="api_rank_query")

    wire_gallery(app, model_name, gallery)
    rank_inputs = [model_name, gallery.state, query.query.drawing, query.query.upload, query.top_k, query.query.choice]
    rank_outputs = [gallery.state, query.verdict, query.table, query.matches, query.faces]
    for example_list in clickable:
        upload, shown = [query.query.upload], [query.query.choice, query.query.using]
        example_list.load_input_event.then(None, upload, shown, js=USE_EXAMPLES_JS, **QUIET).then(
            show_upload_tabs, upload, [query.query.tabs], queue=False, **QUIET
        ).then(clear_rank, gallery.state, rank_outputs, **QUIET).then(
            app.rank_query_with_faces, rank_inputs, rank_outputs, api_name="example_query", api_visibility="private",
            show_progress="minimal",
        )  # fmt: skip
    api_rank.click(app.rank_query, rank_inputs[:5], rank_outputs[:4], api_name="rank_query")
    query.rank_button.click(clear_rank, gallery.state, rank_outputs, **QUIET).then(
        app.rank_query_with_faces, rank_inputs, rank_outputs, api_name="rank_query_page", api_visibility="private",
        show_progress="minimal",
    )  # fmt: skip
    return GalleryTab(gallery, query, gallery.example_kind)


def gallery_panel(app: SimilarityApp, examples: ExampleSets) -> GalleryPanel:
    state = gr.State(None)
    with gr.Row():
        with gr.Column():
            files = gr.File(
                label="Gallery images (label from the name: alice_1.png -> alice), or a .zip of one folder per class "
                "or person",
                file_count="multiple",
                file_types=["image", ".zip"],
                elem_id="gallery_files",
            )
            captions = gr.Textbox(
                label="Labels (optional: one per image, in upload order, comma or line separated)",
                elem_id="gallery_captions",
            )
            build_button = gr.Button("Build gallery", variant="primary", elem_id="build_gallery_button")
            with gr.Row():
                names = app.registry.names
                first_kind = app.model_kind(names[0]) if names else "digits"
                example_kind = gr.Radio(
                    examples.kinds,
                    value=first_kind if first_kind in examples.kinds else examples.kinds[0],
                    label="Example gallery",
                    elem_id="example_kind",
                )
                per_label = gr.Slider(1, 100, value=1, step=1, label="Images per label", elem_id="per_label")
            example_button = gr.Button("Load example gallery", elem_id="load_example_gallery_button")
            saved_file = gr.File(
                label="Or a saved gallery of any size (.safetensors from `siamese embed`)",
                file_types=[".safetensors"],
                elem_id="saved_gallery_file",
            )
            saved_button = gr.Button("Load saved gallery", elem_id="load_saved_gallery_button")
        with gr.Column():
            status = gr.Markdown("No gallery yet.", elem_id="gallery_status")
            preview = gr.Gallery(label="Gallery", columns=8, height=260, format="png", elem_id="gallery_preview")
    return GalleryPanel(
        state, files, captions, build_button, example_kind, per_label, example_button, saved_file, saved_button,
        status, preview,
    )  # fmt: skip


def query_panel(app: SimilarityApp) -> QueryPanel:
    with gr.Row():
        with gr.Column():
            query = image_input(app, "query", "Query", "query")
            top_k = gr.Slider(1, 20, value=5, step=1, label="Top matches", elem_id="top_k")
            rank_button = gr.Button("Rank query", variant="primary", elem_id="rank_button")
        with gr.Column():
            verdict = gr.Markdown(elem_id="rank_verdict")
            table = gr.Dataframe(headers=["rank", "label", "distance", "similarity", "file"], elem_id="rank_table")
            matches = gr.Gallery(label="Top matches", columns=5, height=160, format="png", elem_id="rank_matches")
            faces = gr.Image(
                label="Faces in the query (face models: each face boxed and named)",
                interactive=False,
                format="png",
                elem_id="rank_faces",
            )
    return QueryPanel(query, top_k, rank_button, verdict, table, matches, faces)


def wire_gallery(app: SimilarityApp, model_name: gr.Dropdown, gallery: GalleryPanel) -> None:
    """Each way to make a gallery clears the last one, then builds the new one."""
    for button, handler, inputs, api_name in (
        (gallery.build_button, app.build_gallery, [gallery.files, gallery.captions], "build_gallery"),
        (gallery.example_button, app.load_example_gallery, [gallery.example_kind, gallery.per_label],
         "load_example_gallery"),
        (gallery.saved_button, app.load_saved_gallery, [gallery.saved_file], "load_saved_gallery"),
    ):  # fmt: skip
        button.click(clear_gallery, None, gallery.outputs, **QUIET).then(
            handler, [model_name, *inputs], gallery.outputs, api_name=api_name, show_progress="minimal"
        )
