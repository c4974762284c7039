"""The page's head: title, notes on what is missing, the model picker and its "About this model" panel."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from demo.examples import ExampleSets
from demo.handlers import SimilarityApp
from demo.inputs import QUIET

# The AT&T database's terms: free for research use, with credit to the laboratory that made it.
FACES_CREDIT = (
    "*Example faces, and the photos the bundled faces model's thresholds were chosen on: the AT&T (ORL) Database of "
    "Faces, AT&T Laboratories Cambridge (formerly the Olivetti Research Laboratory), used for research with credit "
    "as its terms ask.*"
)


@dataclass
class ModelPicker:
    picker: gr.Dropdown
    about: gr.Markdown


@dataclass
class ModelSwitch:
    """After the user picks another model: its About panel, the example columns of its domain shown and the others
    hidden, and the gallery's example kind set to its domain."""

    app: SimilarityApp
    examples: ExampleSets

    def __call__(self, model_name: str | None) -> list:
        show = dict(zip(("digits", "faces"), self.app.example_visibility(model_name), strict=True))
        kind = self.app.model_kind(model_name) if model_name else None
        columns = [gr.Column(visible=show[key]) for key in ("digits", "faces") for _ in self.examples.columns[key]]
        example_kind = gr.Radio(value=kind) if kind in self.examples.kinds else gr.Radio()
        return [self.app.model_info(model_name), *columns, example_kind]


def build(app: SimilarityApp, examples: ExampleSets) -> ModelPicker:
    gr.Markdown(
        "# Siamese image similarity\nA Siamese network maps each image to an embedding; images of the same "
        "class lie close together. Compare two images, identify one against a gallery, or explore the map."
    )
    names = app.registry.names
    notes = list(app.registry.notes)
    if examples.faces is None:
        notes.append(
            "No example faces here (no face folder, and scikit-learn's Olivetti faces are not cached): face models "
            "work on your own uploads only."
        )
    if not names:
        notes.append("No model could be loaded, so nothing can be compared. Pass --model user/repo.")
    gr.Markdown("\n".join(f"- {note}" for note in notes), visible=bool(notes), elem_id="model_notes")
    if examples.faces is not None or "faces" in names:
        gr.Markdown(FACES_CREDIT, elem_id="faces_credit")
    with gr.Row():
        picker = gr.Dropdown(names, value=names[0] if names else None, label="Model", elem_id="model_picker", scale=1)
        with gr.Accordion("About this model", open=False, elem_id="about_model"):
            about = gr.Markdown(elem_id="model_info")
    return ModelPicker(picker, about)


def wire(app: SimilarityApp, model: ModelPicker, examples: ExampleSets, example_kind: gr.Radio) -> None:
    """The About panel follows the picker (also as the API's /model_info), and so do the examples shown; both
    columns and `example_kind` must exist by now."""
    model.picker.change(app.model_info, model.picker, model.about, api_name="model_info")
    model.picker.change(
        ModelSwitch(app, examples), model.picker, [model.about, *examples.all_columns(), example_kind], **QUIET
    )
