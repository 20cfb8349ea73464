#!/usr/bin/env python3
"""Recompute every MuSc stage from a golden file's inputs and compare with its reference outputs.

The file follows the key layout of ../shared/golden/musc_small.npz (inputs: tokens, cls, gt_sp, gt_px,
k_list, topmin_max). Any N, patch grid, channel count and k_list works. Exits 1 when an array differs
by more than 1e-4 relative (metrics: 1e-6), 2 when the file is unusable. ``--write OUT`` stores our
outputs in the same layout, for files that carry inputs only.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from musc_online.batch import upsample
from musc_online.lnamd import lnamd
from musc_online.metrics import METRIC_KEYS, compute_metrics
from musc_online.msm import msm
from musc_online.rscin import rscin
from musc_online.settings import MuscSettings

INPUT_KEYS = ("tokens", "cls", "gt_sp", "gt_px", "k_list", "topmin_max")
R_LIST = (1, 3, 5)
ARRAY_TOLERANCE = 1e-4
METRIC_TOLERANCE = 1e-6


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """Largest |ours - ref| / |ref|; values under 0.1 % of the array's peak are judged against that floor."""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        return math.inf
    floor = max(1e-3 * float(np.abs(reference).max(initial=0.0)), 1e-12)
    return float((np.abs(ours - reference) / np.maximum(np.abs(reference), floor)).max(initial=0.0))


def recompute(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output key of the golden layout, computed with musc-online's own stages (floor rounding)."""
    tokens = torch.from_numpy(inputs["tokens"]).float()
    num_layers, n, num_tokens, channels = tokens.shape
    grid = math.isqrt(num_tokens - 1)
    if grid * grid != num_tokens - 1:
        raise ValueError(f"tokens hold {num_tokens - 1} patch tokens per image, not a square grid")
    settings = MuscSettings(r_list=R_LIST, topmin_max=float(inputs["topmin_max"]), topk_rounding="floor")
    maps = [tokens[layer, :, 1:, :].reshape(n, grid, grid, channels).permute(0, 3, 1, 2) for layer in range(num_layers)]

    out: dict[str, np.ndarray] = {}
    per_r = []
    for r in settings.r_list:
        features = [lnamd(layer_map, r) for layer_map in maps]
        out[f"lnamd_r{r}"] = torch.stack(features, dim=2).numpy()
        layer_scores = []
        for layer, layer_features in enumerate(features):
            scores = msm(layer_features, settings.topmin_max, settings.topk_rounding)
            out[f"msm_r{r}_l{layer}"] = scores.numpy()
            layer_scores.append(scores.double())
        per_r.append(torch.stack(layer_scores).mean(dim=0))
    anomaly_map = torch.stack(per_r).mean(dim=0)
    out["anomaly_map"] = anomaly_map.numpy()
    size = tuple(inputs["gt_px"].shape[-2:])
    upsampled = upsample(anomaly_map.view(n, grid, grid), size).unsqueeze(1)
    out["anomaly_map_upsampled"] = upsampled.numpy()
    image_score = upsampled.flatten(1).amax(dim=1)
    out["image_score"] = image_score.numpy()
    k_list = tuple(int(k) for k in inputs["k_list"])
    rescored = rscin(image_score, torch.from_numpy(inputs["cls"]), k_list)
    out["rscin"] = rescored.numpy()
    metrics = compute_metrics(inputs["gt_sp"], out["rscin"], inputs["gt_px"], upsampled.squeeze(1).numpy())
    out["metrics"] = np.array([metrics[key] for key in METRIC_KEYS], dtype=np.float64)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="an .npz file in the musc_small.npz key layout")
    parser.add_argument("--write", type=Path, metavar="OUT", help="also save inputs + our outputs to OUT (.npz)")
    args = parser.parse_args(argv)

    try:
        with np.load(args.file) as data:
            inputs = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        print(f"error: cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    missing = [key for key in INPUT_KEYS if key not in inputs]
    if missing:
        print(f"error: {args.file} lacks input keys {missing} (needs {list(INPUT_KEYS)})", file=sys.stderr)
        return 2

    ours = recompute(inputs)
    failed = False
    print(f"{'key':<24}{'max rel. error':>16}  tolerance  result")
    for key, value in ours.items():
        tolerance = METRIC_TOLERANCE if key == "metrics" else ARRAY_TOLERANCE
        if key not in inputs:
            print(f"{key:<24}{'-':>16}  {tolerance:9.0e}  no reference in file")
            continue
        error = relative_error(value, inputs[key])
        ok = error <= tolerance
        failed |= not ok
        print(f"{key:<24}{error:16.3e}  {tolerance:9.0e}  {'ok' if ok else 'MISMATCH'}")
    if args.write:
        np.savez(args.write, **{key: inputs[key] for key in INPUT_KEYS}, **ours)
        print(f"wrote {args.write}")
    print("parity: FAILED" if failed else "parity: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
