"""The gallery index: the same top-k as brute force, a faithful file round trip, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siamese.search.index import GalleryFileError, GalleryIndex


def clustered(count: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(max(1, count // 20), dim, generator=generator)
    points = centres[torch.randint(len(centres), (count,), generator=generator)]
    return torch.nn.functional.normalize(points + 0.3 * torch.randn(count, dim, generator=generator), dim=1)


def brute_force(embeddings: torch.Tensor, queries: torch.Tensor, k: int):
    distances = np.sqrt(((queries.numpy()[:, None, :] - embeddings.numpy()[None, :, :]) ** 2).sum(axis=2))
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), order


def test_exact_search_gives_the_brute_force_top_k_in_any_chunking():
    embeddings, queries = clustered(500), clustered(23, seed=1)
    index = GalleryIndex(embeddings, [str(i % 7) for i in range(500)], backend="exact")
    expected_distances, expected_indices = brute_force(embeddings, queries, 5)
    for chunk in (64, 100_000):
        distances, indices = index.search(queries, top_k=5, chunk=chunk)
        assert indices.tolist() == expected_indices.tolist()
        np.testing.assert_allclose(distances.numpy(), expected_distances, atol=1e-5)


def test_faiss_search_finds_the_exact_neighbours():
    embeddings, queries = clustered(4000), clustered(50, seed=2)
    index = GalleryIndex(embeddings, ["x"] * 4000, backend="faiss")
    _, expected = brute_force(embeddings, queries, 5)
    distances, indices = index.search(queries, top_k=5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(indices.tolist(), expected.tolist(), strict=True)])
    assert recall >= 0.99
    found = torch.cdist(queries, embeddings[indices[0]])[0]
    np.testing.assert_allclose(distances[0].numpy(), found.numpy(), atol=1e-4)


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_a_saved_gallery_loads_back_identically(tmp_path, backend):
    embeddings = clustered(800)
    labels = [f"person {i % 9}" for i in range(800)]
    paths = [f"folder/ü{i}.png" for i in range(800)]
    index = GalleryIndex(embeddings, labels, paths, model_id="org/model", revision="v1", backend=backend)
    loaded = GalleryIndex.load(index.save(tmp_path / "gallery.safetensors"))
    assert torch.equal(loaded.embeddings, index.embeddings)
    assert (loaded.labels, loaded.paths, loaded.model_id, loaded.revision) == (labels, paths, "org/model", "v1")
    assert loaded.backend == backend
    queries = clustered(10, seed=3)
    assert torch.equal(loaded.search(queries, 4)[1], index.search(queries, 4)[1])
    assert [path.name for path in tmp_path.iterdir()] == ["gallery.safetensors"]


def test_damaged_foreign_and_mismatched_galleries_get_clear_errors(tmp_path):
    from safetensors.torch import save_file

    index = GalleryIndex(clustered(30), ["a"] * 30, model_id="org/model")
    path = index.save(tmp_path / "gallery.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(GalleryFileError, match="damaged"):
        GalleryIndex.load(truncated)
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(GalleryFileError, match="not a gallery"):
        GalleryIndex.load(tmp_path / "weights.safetensors")
    with pytest.raises(GalleryFileError, match="no such gallery file"):
        GalleryIndex.load(tmp_path / "missing.safetensors")
    loaded = GalleryIndex.load(path)
    with pytest.raises(GalleryFileError, match="16-d embeddings .* 32-d"):
        loaded.check_model("org/model", 32)
    with pytest.raises(GalleryFileError, match="made with 'org/model', not 'org/other'"):
        loaded.check_model("org/other", 16)
    with pytest.raises(GalleryFileError, match="queries have 8 dimensions"):
        loaded.search(torch.zeros(1, 8))
