"""MSM: Mutual Scoring Mechanism (MuSc, section 3.3).

Every patch of image i is scored by its distance to the nearest patch of each other image j; the
score is the mean of the smallest ``interval_size`` of those per-image distances. A normal patch has
look-alikes in most images, a defect in few, so its low-end mean stays high.

Features are unit vectors, so the nearest patch by distance is the one with the largest inner product
and d = sqrt(2 - 2 s). We therefore run inner-product GEMMs (half precision on CUDA, float32 on the
CPU), reduce each block to its per-reference-image maxima at once, and take the square root of those
maxima only: the full (N P) x (N P) distance matrix never exists. One block S = Z_a Z_b^T serves both
directions: its row maxima are a's nearest distances into b, its column maxima b's nearest into a.
"""

from __future__ import annotations

import math

import torch

from musc_online.settings import Rounding

#: Elements of one similarity block per device type. On the CPU a block that stays in cache (16 MiB)
#: is twice as fast as a large one; on a GPU large blocks keep the GEMMs efficient (256 MiB in fp16).
BLOCK_ELEMENTS = {"cpu": 4 * 2**20, "cuda": 128 * 2**20}


def interval_size(num_references: int, topmin_max: float = 0.3, rounding: Rounding = "ceil") -> int:
    """How many of the smallest per-reference distances MSM averages.

    ``floor`` is the reference's ``int(topmin_max * (N - 1))``, kept for parity; it is empty for
    fewer than 5 images, so it is clamped to 1 here. ``ceil`` (default) keeps small sets meaningful.
    """
    if num_references < 1:
        raise ValueError("MSM needs at least one reference image")
    exact = topmin_max * num_references
    if rounding == "floor":
        k = int(exact)
    elif rounding == "ceil":
        k = math.ceil(exact - 1e-9)  # 0.3 * 10 is 3.0000000000000004 in floating point
    else:
        raise ValueError(f"topk rounding must be 'ceil' or 'floor', got {rounding!r}")
    return min(max(k, 1), num_references)


def compute_dtype(device: torch.device) -> torch.dtype:
    """Half precision where GEMMs are fast in it (CUDA), float32 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _block_images(num_patches: int, block_elements: int | None, device: torch.device) -> int:
    """Images per side of a square similarity block that holds at most ``block_elements`` values."""
    if block_elements is None:
        block_elements = BLOCK_ELEMENTS.get(device.type, BLOCK_ELEMENTS["cpu"])
    return max(1, math.isqrt(block_elements) // num_patches)


def _inner_products(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """rows @ columns.T accumulated and returned in float32, also for half-precision inputs.

    A half-precision result would round similarities near 1 to 5e-4 steps, i.e. patch scores off by up to
    4e-4; float32 output costs about a quarter more GEMM time and keeps scores within 1e-5.
    """
    if rows.dtype == torch.float32:
        return rows @ columns.T
    return torch.mm(rows, columns.T, out_dtype=torch.float32)


def nearest_similarity(features: torch.Tensor, block_elements: int | None = None) -> torch.Tensor:
    """Largest inner product from every patch of every image to each other image, (N, N, P).

    ``features`` is (N, P, C) of unit vectors; entry [i, j, p] is max_q <z_ip, z_jq>. The diagonal
    (an image against itself) is -inf so that it never counts as a reference.
    """
    n, p, c = features.shape
    out = torch.empty(n, n, p, dtype=torch.float32, device=features.device)
    flat = features.reshape(n * p, c)
    step = _block_images(p, block_elements, features.device)
    for a0 in range(0, n, step):
        a1 = min(a0 + step, n)
        for b0 in range(a0, n, step):
            b1 = min(b0 + step, n)
            sim = _inner_products(flat[a0 * p : a1 * p], flat[b0 * p : b1 * p]).view(a1 - a0, p, b1 - b0, p)
            out[a0:a1, b0:b1] = sim.amax(dim=3).transpose(1, 2)
            if b0 != a0:
                out[b0:b1, a0:a1] = sim.amax(dim=1).permute(1, 0, 2)
    out.diagonal(dim1=0, dim2=1).fill_(-math.inf)
    return out


def query_similarity(query: torch.Tensor, references: torch.Tensor, block_elements: int | None = None) -> torch.Tensor:
    """Largest inner product from each patch of one image to each reference image, (R, P).

    ``query`` is (P, C), ``references`` (R, P', C), both unit vectors: entry [r, p] is max_q <x_p, z_rq>.
    This is one row of ``nearest_similarity``: what online scoring of a single frame needs.
    """
    p, c = query.shape
    count, p_ref = references.shape[:2]
    if block_elements is None:
        block_elements = BLOCK_ELEMENTS.get(query.device.type, BLOCK_ELEMENTS["cpu"])
    step = max(1, block_elements // (p * p_ref))
    out = torch.empty(count, p, dtype=torch.float32, device=query.device)
    for r0 in range(0, count, step):
        r1 = min(r0 + step, count)
        sim = _inner_products(query, references[r0:r1].reshape(-1, c)).view(p, r1 - r0, p_ref)
        out[r0:r1] = sim.amax(dim=2).T
    return out


def distances_from_similarity(similarity: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between unit vectors from their inner product: sqrt(2 - 2 s)."""
    return (2.0 - 2.0 * similarity.float()).clamp_min_(0.0).sqrt_()


def interval_mean(distances: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """Mean of the ``k`` smallest values along ``dim`` (the reference's interval average)."""
    return distances.topk(k, dim=dim, largest=False).values.mean(dim=dim)


def msm(
    features: torch.Tensor,
    topmin_max: float = 0.3,
    rounding: Rounding = "ceil",
    block_elements: int | None = None,
) -> torch.Tensor:
    """Patch anomaly scores (N, P) of a batch of unit patch features (N, P, C), each image scored by the rest."""
    n = features.shape[0]
    if n < 2:
        raise ValueError(f"MSM needs at least 2 images to score against each other, got {n}")
    features = features.to(compute_dtype(features.device))
    distances = distances_from_similarity(nearest_similarity(features, block_elements))
    return interval_mean(distances, interval_size(n - 1, topmin_max, rounding), dim=1)
