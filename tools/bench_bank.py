"""Time the judge bank on the frame path: one frame's nearest-judge search and the gather of the found judges'
image features, at several bank sizes (random unit features; search time does not depend on their values).

    python tools/bench_bank.py --judges 1000,10000,100000 --device cuda --json docs/benchmarks/bank_h100.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from bench_common import machine

from musc_online.online import faiss_index
from musc_online.online.bank import FeatureBank


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def time_bank(judges: int, dim: int, queries: int, k: int, device: torch.device) -> dict[str, object]:
    """Fill a bank with ``judges`` random unit features and time ``queries`` single-frame searches and gathers."""
    generator = torch.Generator().manual_seed(judges)
    features = torch.nn.functional.normalize(torch.randn(judges, dim, generator=generator), dim=1)
    bank = FeatureBank(dim, device)
    started = time.perf_counter()
    for i, feature in enumerate(features):
        bank.add(f"j{i}", feature)
    fill_s = time.perf_counter() - started
    frames = torch.nn.functional.normalize(torch.randn(queries + 1, dim, generator=generator), dim=1).to(device)
    search_ms, gather_ms = [], []
    for q, frame in enumerate(frames):  # the first pass warms up (and builds a GPU copy), untimed
        started = time.perf_counter()
        found = bank.search(frame, k)[0]
        searched = time.perf_counter()
        gathered = bank.image_features([item_id for item_id, _ in found])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if q:
            search_ms.append((searched - started) * 1e3)
            gather_ms.append((time.perf_counter() - searched) * 1e3)
    assert gathered.shape == (min(k, judges), dim)
    return {
        "judges": judges,
        "fill_seconds": fill_s,
        "search_ms": {"p50": _p(search_ms, 50), "p99": _p(search_ms, 99)},
        "gather_ms": {"p50": _p(gather_ms, 50), "p99": _p(gather_ms, 99)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judges", default="1000,10000,100000", help="bank sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=768, help="image feature size (ViT-L-14-336: 768)")
    parser.add_argument("--queries", type=int, default=200, help="frames timed per bank size")
    parser.add_argument("--k", type=int, default=16, help="judges asked for per frame")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    figures = {
        "machine": machine(device),
        "settings": {"dim": args.dim, "queries": args.queries, "k": args.k, "device": str(device)},
        "search_on": "gpu" if faiss_index.searches_on_gpu(device.type) else "cpu",
        "faiss_gpus": faiss_index.gpu_count(),
        "banks": [time_bank(int(n), args.dim, args.queries, args.k, device) for n in args.judges.split(",")],
    }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)


if __name__ == "__main__":
    main()
