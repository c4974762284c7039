"""The pair tab's distance plot: calibrated genuine and impostor distance densities, with the pair marked."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

import numpy as np
from gradio.components.plot import PlotData

if TYPE_CHECKING:
    import plotly.graph_objects as go


def distance_figure(calibration: dict | None, distance: float) -> go.Figure:
    """Genuine and impostor distance densities from the calibration, with this pair's distance marked."""
    figure = _distance_bars(calibration)
    shapes, annotations = _distance_marks(calibration, distance)
    return figure.update_layout(shapes=shapes, annotations=annotations)


def distance_plot(calibration: dict | None, distance: float) -> PlotData:
    """distance_figure as gr.Plot's JSON, the bars taken from a cache: plotly spends about 4 ms building and
    validating the figure, a tenth of a pair request's server time under load."""
    histogram = (calibration or {}).get("distance_histogram") or {}
    figure = json.loads(_distance_bars_json(json.dumps(histogram, sort_keys=True)))
    shapes, annotations = _distance_marks(calibration, distance)
    figure["layout"].update(shapes=shapes, annotations=annotations)
    return PlotData(type="plotly", plot=json.dumps(figure))


@functools.lru_cache(maxsize=32)
def _distance_bars_json(histogram_json: str) -> str:
    return _distance_bars({"distance_histogram": json.loads(histogram_json)}).to_json()


def _distance_bars(calibration: dict | None) -> go.Figure:
    """The figure of distance_figure without the marks: one bar trace per class relation."""
    import plotly.graph_objects as go  # on first use: plotly adds ~35 ms to the app's start-up

    bars = []
    histogram = (calibration or {}).get("distance_histogram") or {}
    edges = np.asarray(histogram.get("edges") or [], dtype=float)
    if len(edges) >= 2:
        centres = (edges[:-1] + edges[1:]) / 2
        widths = np.diff(edges)
        for key, name, colour in (("genuine", "same class", "#2a9d8f"), ("impostor", "different class", "#e76f51")):
            values = histogram.get(key)
            if values is not None and len(values) == len(centres):
                bars.append(go.Bar(x=centres, y=values, width=widths, name=name, marker_color=colour, opacity=0.55))
    return go.Figure(
        data=bars,
        layout={
            "barmode": "overlay",
            "xaxis": {"title": {"text": "distance between embeddings"}},
            "yaxis": {"title": {"text": "density (held-out pairs)"}},
            "height": 320,
            "margin": {"l": 40, "r": 10, "t": 56, "b": 40},  # room for the plot label above the line labels
            "legend": {"orientation": "h", "y": -0.25},
        },
    )


def _distance_marks(calibration: dict | None, distance: float) -> tuple[list[dict], list[dict]]:
    """Layout shapes and annotations marking this pair's distance and the threshold (plain dicts: Figure.add_vline
    costs ~10 ms a call)."""
    threshold = (calibration or {}).get("threshold")
    pair_side = "left" if not threshold or threshold <= distance else "right"
    marks = [(distance, "this pair", "black", "solid", 3, pair_side)]
    if threshold:
        # The two labels lean away from each other, so they do not overlap when the lines are close.
        marks.append((threshold, "threshold", "grey", "dash", 2, "right" if pair_side == "left" else "left"))
    shapes = [
        {
            "type": "line",
            "x0": x,
            "x1": x,
            "y0": 0,
            "y1": 1,
            "yref": "paper",
            "line": {"color": c, "dash": d, "width": w},
        }
        for x, _, c, d, w, _ in marks
    ]
    annotations = [
        {"x": x, "y": 1, "yref": "paper", "text": f" {text} ", "showarrow": False, "xanchor": side, "yanchor": "bottom"}
        for x, text, *_, side in marks
    ]
    return shapes, annotations
