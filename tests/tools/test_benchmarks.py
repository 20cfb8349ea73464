"""The benchmark scripts run unattended: --help, and a tiny run of each on the random test backbone."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOLS / script), *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize(
    "script", ["bench_batch.py", "bench_online.py", "bench_daemon.py", "golden_check.py", "soak.py"]
)
def test_help(script):
    result = _run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout


def test_bench_batch_tiny_run(tmp_path):
    out = tmp_path / "b.json"
    result = _run(
        "bench_batch.py",
        "--backbone",
        "test_random_vit",
        "--images",
        "6",
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["settings"]["images"] == 6
    assert figures["ms_per_image"]["features_to_maps"] > 0


def test_bench_online_tiny_run(tmp_path):
    out = tmp_path / "o.json"
    result = _run(
        "bench_online.py",
        "--backbone",
        "test_random_vit",
        "--window",
        "5",
        "--frames",
        "6",
        "--micro-batch",
        "2",
        "--device",
        "cpu",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["references_per_frame"] == {"voters": 5, "judges": 0}
    assert figures["frames_per_second"] > 0
    assert figures["latency_ms"]["msm"]["p50"] > 0


def test_bench_daemon_tiny_run(tmp_path):
    out = tmp_path / "d.json"
    result = _run(
        "bench_daemon.py",
        "--size",
        "96",
        "--window",
        "8",
        "--frames",
        "12",
        "--rate",
        "20",
        "--image-px",
        "96",
        "--device",
        "cpu",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["latency_ms"]["p50"] > 0
    assert figures["latency_ms"]["p99"] >= figures["latency_ms"]["p50"]
    assert figures["frames_per_second"] > 0
    assert figures["counts"]["received"] == figures["counts"]["decided"] > 0


@pytest.mark.slow
def test_soak_tiny_run_passes_its_checks(tmp_path):
    out = tmp_path / "s.json"
    result = _run(
        "soak.py",
        *("--frames", "240", "--backbone", "test_random_vit", "--size", "64", "--window", "8", "--image-px", "96"),
        *("--slow-rate", "20", "--fast-rate", "200", "--mark-every-s", "2", "--max-files", "20", "--json", str(out)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert all(figures["checks"].values())
    frames = figures["frames"]
    assert frames["late"] > 0  # the fast half outran the line, and was told so
    assert sum(frames["malformed"].values()) == 7
    assert figures["corrections"]["marked"] > 0
    assert [exit for _, exit in figures["daemon_exits"]] == [-9, 0]
