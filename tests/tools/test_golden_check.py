import subprocess
import sys
from pathlib import Path

import numpy as np

TOOL = Path(__file__).resolve().parents[2] / "tools" / "golden_check.py"


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_shipped_reference_file_passes(golden_path):
    result = _run(golden_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "parity: ok" in result.stdout
    assert "MISMATCH" not in result.stdout
    for key in ("lnamd_r5", "msm_r3_l2", "anomaly_map_upsampled", "rscin", "metrics"):
        assert key in result.stdout


def _inputs_only(tmp_path, n=7, grid=5, c=12, k_list=(1, 4)):
    rng = np.random.default_rng(0)
    cls = rng.normal(size=(n, 9)).astype(np.float32)
    gt_sp = np.zeros(n, dtype=np.int64)
    gt_sp[-2:] = 1
    gt_px = np.zeros((n, 20, 20), dtype=np.int32)
    gt_px[-2:, 5:9, 5:9] = 1
    path = tmp_path / "inputs.npz"
    np.savez(
        path,
        tokens=rng.normal(size=(3, n, 1 + grid * grid, c)).astype(np.float32),
        cls=cls / np.linalg.norm(cls, axis=1, keepdims=True),
        gt_sp=gt_sp,
        gt_px=gt_px,
        k_list=np.array(k_list),
        topmin_max=np.array(0.3),
    )
    return path


def test_any_shape_runs_and_a_perturbed_output_is_caught(tmp_path):
    inputs = _inputs_only(tmp_path)
    written = tmp_path / "with_outputs.npz"
    first = _run(inputs, "--write", written)
    assert first.returncode == 0, first.stderr
    assert "no reference in file" in first.stdout

    assert _run(written).returncode == 0

    with np.load(written) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["msm_r3_l1"] = arrays["msm_r3_l1"] * (1 + 1e-3)
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)
    result = _run(tampered)
    assert result.returncode == 1
    assert "MISMATCH" in result.stdout.split("msm_r3_l1")[1].splitlines()[0]


def test_missing_inputs_are_named(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, tokens=np.zeros((1, 2, 5, 3), dtype=np.float32))
    result = _run(path)
    assert result.returncode == 2
    assert "cls" in result.stderr
