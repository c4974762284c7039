"""The out-of-distribution rule: nearest-reference distances and the leave-one-out limit, against plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siamese.evaluation.calibration import nearest_reference_distances, out_of_distribution_limit


def loop_nearest(points: np.ndarray, references: np.ndarray, skip_same_index: bool = False) -> np.ndarray:
    nearest = []
    for row, point in enumerate(points):
        distances = [
            np.sqrt(((point - reference) ** 2).sum())
            for column, reference in enumerate(references)
            if not (skip_same_index and column == row)
        ]
        nearest.append(min(distances))
    return np.array(nearest)


def test_nearest_reference_distances_match_a_plain_loop():
    generator = np.random.default_rng(0)
    references = generator.normal(size=(30, 6))
    queries = generator.normal(size=(7, 6)) * 3
    got = nearest_reference_distances(torch.tensor(queries), torch.tensor(references))
    np.testing.assert_allclose(got, loop_nearest(queries, references), rtol=1e-4, atol=1e-4)


def test_limit_is_the_quantile_of_leave_one_out_nearest_distances():
    generator = np.random.default_rng(1)
    references = generator.normal(size=(200, 5))
    held_out = loop_nearest(references, references, skip_same_index=True)
    limit = out_of_distribution_limit(torch.tensor(references))
    assert limit == pytest.approx(np.quantile(held_out, 0.99), rel=1e-4)
    assert out_of_distribution_limit(torch.tensor(references), quantile=0.5) == pytest.approx(
        np.median(held_out), rel=1e-4
    )
    # About 1% of the references themselves lie beyond the limit; a far-away point does too.
    assert (held_out > limit).mean() <= 0.01 + 1e-9
    far = nearest_reference_distances(torch.full((1, 5), 20.0, dtype=torch.float64), torch.tensor(references))
    assert far[0] > limit


def test_bad_shapes_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="at least 2 reference"):
        out_of_distribution_limit(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="expected embeddings"):
        nearest_reference_distances(torch.zeros(3, 4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="quantile"):
        out_of_distribution_limit(torch.zeros(5, 4), quantile=0)
