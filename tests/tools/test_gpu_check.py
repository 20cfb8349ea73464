"""tools/gpu_check.sh: its CPU-safe parts run tiny with --dry-run and print one table; without CUDA the real
run refuses at once instead of timing the CPU. The dry run doubles as the tiny runs of bench_batch, bench_online
and bench_daemon."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _gpu_check(*args: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPU_CHECK_OUT": str(out), "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_check.sh"), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_dry_run_runs_each_cpu_safe_step_tiny_and_prints_one_table(tmp_path):
    result = _gpu_check("--dry-run", out=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "bank_dryrun.json",
        "batch_dryrun_paper.json",
        "daemon_dryrun_mb2.json",
        "online_dryrun_paper_w4.json",
    ]
    table = result.stdout.split("\ngpu_check on ", 1)[1]
    for row in ("batch MuSc", "online W 4", "daemon micro-batch 2", "bank 100 judges", "bank 1000 judges"):
        assert row in table
    assert not list((ROOT / "docs" / "benchmarks").glob("*dryrun*"))
    # The dry run is also each script's tiny run on the random test backbone (tests/tools/test_benchmarks.py).
    batch = json.loads((tmp_path / "batch_dryrun_paper.json").read_text())
    assert batch["settings"]["images"] == 4 and batch["ms_per_image"]["features_to_maps"] > 0
    online = json.loads((tmp_path / "online_dryrun_paper_w4.json").read_text())
    assert online["settings"]["micro_batch"] == 2 and online["references_per_frame"] == {"voters": 4, "judges": 0}
    assert online["frames_per_second"] > 0 and online["latency_ms"]["msm"]["p50"] > 0
    daemon = json.loads((tmp_path / "daemon_dryrun_mb2.json").read_text())
    assert 0 < daemon["latency_ms"]["p50"] <= daemon["latency_ms"]["p99"] and daemon["frames_per_second"] > 0
    assert daemon["counts"]["received"] == daemon["counts"]["decided"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_real_run_refuses_without_cuda(tmp_path):
    result = _gpu_check(out=tmp_path)
    assert result.returncode == 2 and "no CUDA device here" in result.stderr
    assert list(tmp_path.iterdir()) == []
