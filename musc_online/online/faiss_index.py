"""FAISS adapter: the one module that imports faiss. Exact inner-product indexes, on the CPU or a GPU.

Vectors given to these indexes are expected L2-normalised, so inner product is cosine similarity.

A bank keeps its searchable features in one CPU ``IndexIDMap2`` (add, remove in place, keyed). On a CUDA line
whose faiss has GPU support (``pip install 'musc-online[gpu]'``), searches run on a GPU copy instead
(``GpuSearch``): FAISS's GPU indexes cannot remove entries, so the copy is rebuilt from the bank's rows after
the bank changes. Which one a process uses is logged once.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

try:
    import faiss
except ImportError as error:  # faiss-cpu is a dependency, but a broken install should say what is missing
    raise ImportError(
        "musc_online.online needs FAISS: install faiss-cpu (or faiss-gpu, which includes the CPU indexes)"
    ) from error

FaissIndex = Any  # faiss.Index; SWIG classes carry no useful static types
log = logging.getLogger(__name__)


def build_id_index(dim: int) -> FaissIndex:
    """An empty exact inner-product index of dimension ``dim`` whose vectors carry int64 keys: add, remove, get."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def gpu_count() -> int:
    """GPUs this faiss build can use: 0 for faiss-cpu, or for faiss-gpu on a machine without CUDA devices."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


@functools.cache
def searches_on_gpu(device_type: str) -> bool:
    """Whether banks on a ``device_type`` device search on the GPU; logs the choice once per device type."""
    on_gpu = device_type == "cuda" and gpu_count() > 0
    if on_gpu:
        log.info("judge bank search: on the GPU (faiss %s with %d GPU(s))", faiss.__version__, gpu_count())
    elif device_type == "cuda":
        log.info("judge bank search: on the CPU (this faiss has no GPU support: pip install 'musc-online[gpu]')")
    else:
        log.info("judge bank search: on the CPU")
    return on_gpu


class GpuSearch:
    """An exact inner-product GPU index over given vectors, answering with the keys they were given with."""

    _resources: FaissIndex = None  # one StandardGpuResources per process, made on first use

    def __init__(self, vectors: np.ndarray, keys: np.ndarray, device: int = 0) -> None:
        if GpuSearch._resources is None:
            GpuSearch._resources = faiss.StandardGpuResources()
        config = faiss.GpuIndexFlatConfig()
        config.device = device
        self._index = faiss.GpuIndexFlatIP(GpuSearch._resources, vectors.shape[1], config)
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._keys = np.asarray(keys, dtype=np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Like ``Index.search``: (similarities, keys), -1 keys where fewer than ``k`` vectors exist."""
        similarities, rows = self._index.search(queries, k)
        return similarities, np.where(rows >= 0, self._keys[np.maximum(rows, 0)], -1)
