"""tools/gpu_check.sh: its CPU-safe parts run tiny with --dry-run and print one table; without CUDA the real
run refuses at once instead of timing the CPU."""

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


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_real_run_refuses_without_cuda(tmp_path):
    result = _gpu_check(out=tmp_path)
    assert result.returncode == 2 and "no CUDA device here" in result.stderr
    assert list(tmp_path.iterdir()) == []
