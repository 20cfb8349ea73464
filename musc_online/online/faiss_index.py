"""FAISS adapter: the one module that imports faiss. Exact inner-product indexes, searched on the CPU.

Vectors given to these indexes are expected L2-normalised, so inner product is cosine similarity.

A judge bank holds hundreds to a few thousand image features: an exact search over them on the CPU takes
microseconds per frame, while FAISS's GPU indexes cannot remove entries (an operator's correction or a pruned
judge removes one). So banks keep their features in one CPU ``IndexIDMap2`` (the only copy of them) on every
machine, faiss-gpu installs included; the patch-level scoring still runs on the GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

try:
    import faiss
except ImportError as error:  # faiss-cpu is a dependency, but a broken install should say what is missing
    raise ImportError(
        "musc_online.online needs FAISS: install faiss-cpu (or faiss-gpu, which includes the CPU indexes)"
    ) from error

FaissIndex = Any  # faiss.Index; SWIG classes carry no useful static types


def build_id_index(dim: int) -> FaissIndex:
    """An empty exact inner-product index of dimension ``dim`` whose vectors carry int64 keys: add, remove, get."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def flat_index(vectors: np.ndarray) -> FaissIndex:
    """An exact inner-product index holding ``vectors`` (float32 rows) in order: the form a bank is saved in."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def write_index(index: FaissIndex, path: Path) -> None:
    """Write ``index`` to ``path``."""
    faiss.write_index(index, str(path))


def read_ip_index(path: Path) -> FaissIndex:
    """Read an inner-product index written by ``write_index``."""
    index = faiss.read_index(str(path))
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{path} is not an inner-product FAISS index (metric type {index.metric_type})")
    return index
