"""The FAISS adapter: exact inner-product search with keys, removal in place, round trip through a file."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

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


def test_write_and_read_keep_the_vectors(tmp_path: Path) -> None:
    base = _unit_rows(np.random.default_rng(1), 10, 8)
    faiss_index.write_index(faiss_index.flat_index(base), tmp_path / "index.faiss")
    loaded = faiss_index.read_ip_index(tmp_path / "index.faiss")
    assert (loaded.d, loaded.ntotal) == (8, 10)
    np.testing.assert_array_equal(loaded.reconstruct_n(0, 10), base)


def test_read_refuses_an_l2_index(tmp_path: Path) -> None:
    faiss_index.faiss.write_index(faiss_index.faiss.IndexFlatL2(4), str(tmp_path / "l2.faiss"))
    with pytest.raises(ValueError, match="not an inner-product"):
        faiss_index.read_ip_index(tmp_path / "l2.faiss")


def test_missing_faiss_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    monkeypatch.delitem(sys.modules, faiss_index.__name__)
    with pytest.raises(ImportError, match=r"faiss-cpu.*faiss-gpu"):
        importlib.import_module(faiss_index.__name__)
