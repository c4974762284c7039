"""The built-in examples the page offers: which sets there are, their clickable lists, and what a click does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from siamese.data import examples as example_data
from siamese.data.examples import ExampleSet
from siamese.serving import ReferenceImages

# Twelve AT&T photos shipped with the app (see their CREDITS.md): the face examples when no other faces are at hand.
EXAMPLE_FACES_FOLDER = Path(__file__).resolve().parent / "example_faces"
# After an example click, each filled slot uses its upload: set in the page the moment the example's images land, as
# a drawing sets it, so a stroke made after that wins (a queued round trip could land after the stroke and undo it).
USE_EXAMPLES_JS = """(...files) => files.flatMap((file) => {
    const name = file ? (file.orig_name || String(file.path).split("/").pop()) : "nothing";
    const shown = name.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
    return ["upload", `Using: example **${shown}**.`];
})"""


@dataclass
class ExampleSets:
    """The example images of each domain (faces None where they cannot be had) and their query files, which
    domain the first model shows, and the columns holding each domain's examples (shown only for a model of that
    domain)."""

    digits: ExampleSet
    faces: ExampleSet | None
    show_digits: bool
    show_faces: bool
    digit_queries: list[str] = field(default_factory=list)
    face_queries: list[str] = field(default_factory=list)
    columns: dict[str, list[gr.Column]] = field(default_factory=lambda: {"digits": [], "faces": []})

    @classmethod
    def load(cls, references: ReferenceImages, show_digits: bool, show_faces: bool) -> ExampleSets:
        """The examples the app's reference images offer (see siamese.serving.ReferenceImages)."""
        digits, faces = references.for_kind("digits"), references.for_kind("faces")
        face_queries = [] if faces is None else example_data.query_examples(faces)
        return cls(digits, faces, show_digits, show_faces, example_data.query_examples(digits), face_queries)

    @property
    def kinds(self) -> list[str]:
        """The domains with examples here."""
        return ["digits", "faces"] if self.faces is not None else ["digits"]

    def column(self, kind: str, elem_id: str) -> gr.Column:
        """A column for examples of `kind`, visible when the first model is of that kind."""
        column = gr.Column(visible=self.show_digits if kind == "digits" else self.show_faces, elem_id=elem_id)
        self.columns[kind].append(column)
        return column

    def all_columns(self) -> list[gr.Column]:
        return self.columns["digits"] + self.columns["faces"]


def pair_examples(examples: ExampleSet, inputs: list, label: str) -> gr.Examples:
    """Clickable example pairs, labelled with their classes ("7 vs 1")."""
    pairs = example_data.pair_examples(examples)
    # File names end in the class: pair0_a_7.png.
    names = [[Path(path).stem.rsplit("_", 1)[-1] for path in pair] for pair in pairs]
    return gr.Examples(
        pairs,
        inputs,
        label=label,
        example_labels=[f"{first} vs {second}" for first, second in names],
        examples_per_page=len(pairs),
    )


def file_examples(paths: list[str], component, label: str) -> gr.Examples:
    """Clickable single example files, labelled with their classes."""
    return gr.Examples(
        [[path] for path in paths],
        [component],
        label=label,
        example_labels=[Path(path).stem.rsplit("_", 1)[-1] for path in paths],
        examples_per_page=len(paths),
    )


def show_upload_tabs(*paths):
    """After an example click: the Upload tab of each filled slot is shown."""
    updates = [gr.Tabs(selected="upload") for _ in paths]
    # Gradio takes a one-output handler's return value whole: a list there is not an update.
    return updates[0] if len(updates) == 1 else updates
