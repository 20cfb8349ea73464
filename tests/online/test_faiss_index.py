"""The FAISS adapter: exact inner-product search with keys and removal in place; where searches run (GPU or CPU)."""

from __future__ import annotations

import importlib
import logging
import sys

import numpy as np
import pytest

from musc_online.online import faiss_index


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_id_index_ranks_like_numpy_and_removes_in_place() -> None:
    rng = np.random.default_rng(0)
    base, queries = _unit_rows(rng, 40, 16), _unit_rows(rng, 5, 16)
    index = faiss_index.build_id_index(16)
    keys = np.arange(100, 140, dtype=np.int64)
    index.add_with_ids(base, keys)
    similarities, found = index.search(queries, 7)
    expected = queries @ base.T
    np.testing.assert_array_equal(found, keys[np.argsort(-expected, axis=1)[:, :7]])
    np.testing.assert_allclose(similarities, np.take_along_axis(expected, found - 100, axis=1), atol=1e-6)
    index.remove_ids(np.array([105], dtype=np.int64))
    assert index.ntotal == 39 and 105 not in index.search(base[5:6], 3)[1]
    np.testing.assert_array_equal(index.reconstruct(110), base[10])


def test_search_place_is_chosen_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    faiss_index.searches_on_gpu.cache_clear()
    with caplog.at_level(logging.INFO, logger=faiss_index.__name__):
        on_gpu = [faiss_index.searches_on_gpu("cuda") for _ in range(3)] + [faiss_index.searches_on_gpu("cpu")]
    assert on_gpu == [faiss_index.gpu_count() > 0] * 3 + [False]
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "judge bank search: on the GPU" if on_gpu[0] else "judge bank search: on the CPU",
        "judge bank search: on the CPU",
    ]


@pytest.mark.gpu
@pytest.mark.skipif(faiss_index.gpu_count() == 0, reason="needs faiss with GPU support and a CUDA device")
def test_gpu_search_answers_with_the_given_keys_like_the_cpu_index() -> None:
    rng = np.random.default_rng(2)
    base, queries = _unit_rows(rng, 1000, 32), _unit_rows(rng, 8, 32)
    keys = np.arange(5000, 6000, dtype=np.int64)
    cpu = faiss_index.build_id_index(32)
    cpu.add_with_ids(base, keys)
    similarities, found = faiss_index.GpuSearch(base, keys).search(queries, 10)
    expected_similarities, expected = cpu.search(queries, 10)
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(similarities, expected_similarities, atol=1e-5)


def test_missing_faiss_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    monkeypatch.delitem(sys.modules, faiss_index.__name__)
    with pytest.raises(ImportError, match=r"faiss-cpu.*faiss-gpu"):
        importlib.import_module(faiss_index.__name__)
