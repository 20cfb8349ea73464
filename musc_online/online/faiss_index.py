"""FAISS adapter: the one module that imports faiss; exact inner-product indexes, on the GPU when faiss-gpu can.

Vectors given to these indexes are expected L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

try:
    import faiss
except ImportError as error:  # faiss-cpu is a dependency, but a broken install should say what is missing
    raise ImportError(
        "musc_online.online needs FAISS: install faiss-cpu, or faiss-gpu (extra musc-online[gpu]) for GPU indexes"
    ) from error

FaissIndex = Any  # faiss.Index or faiss.GpuIndex; SWIG classes carry no useful static types


def gpu_available() -> bool:
    """True when the installed faiss has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@functools.cache
def _gpu_resources() -> Any:
    """One StandardGpuResources per process: each instance reserves its own scratch memory on the GPU."""
    return faiss.StandardGpuResources()


def _use_gpu(use_gpu: bool | None) -> bool:
    """Resolve ``use_gpu``: None means "the GPU if faiss can use one"; True without support is an error."""
    if use_gpu is None:
        return gpu_available()
    if use_gpu and not gpu_available():
        raise RuntimeError(
            "a GPU FAISS index was requested, but the installed faiss has no GPU support or sees no GPU: "
            "install faiss-gpu (extra musc-online[gpu]) or leave use_gpu unset to use faiss-cpu"
        )
    return use_gpu


def _to_gpu_if(index: FaissIndex, use_gpu: bool | None, gpu_device: int) -> FaissIndex:
    """Move a CPU index to GPU ``gpu_device`` when ``use_gpu`` resolves to True; else return it as is."""
    if not _use_gpu(use_gpu):
        return index
    return faiss.index_cpu_to_gpu(_gpu_resources(), gpu_device, index)


def build_ip_index(dim: int, use_gpu: bool | None = None, gpu_device: int = 0) -> FaissIndex:
    """An empty exact (flat) inner-product index of dimension ``dim``: faiss-gpu when available and wanted."""
    return _to_gpu_if(faiss.IndexFlatIP(dim), use_gpu, gpu_device)


def index_kind(index: FaissIndex) -> str:
    """Which implementation ``index`` is: ``"faiss-gpu"`` or ``"faiss-cpu"``."""
    is_gpu = hasattr(faiss, "GpuIndex") and isinstance(index, faiss.GpuIndex)
    return "faiss-gpu" if is_gpu else "faiss-cpu"


def write_index(index: FaissIndex, path: Path) -> None:
    """Write ``index`` to ``path``; a GPU index is copied to the CPU first (faiss cannot serialise GPU indexes)."""
    cpu_index = faiss.index_gpu_to_cpu(index) if index_kind(index) == "faiss-gpu" else index
    faiss.write_index(cpu_index, str(path))


def read_ip_index(path: Path, use_gpu: bool | None = None, gpu_device: int = 0) -> FaissIndex:
    """Read an inner-product index written by ``write_index``, placed on the GPU by the same rule as building."""
    index = faiss.read_index(str(path))
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{path} is not an inner-product FAISS index (metric type {index.metric_type})")
    return _to_gpu_if(index, use_gpu, gpu_device)
