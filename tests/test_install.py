"""A plain (non-editable) install of the package works on its own: defaults come from the settings classes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_plain_install_outside_the_checkout_runs_config_show(tmp_path):
    source = tmp_path / "source"  # what a user's download holds, built away from the checkout
    for name in ("musc_online", "daemon"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "site"
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]  # nothing is downloaded
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", *offline, "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "plant"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, str(target / "bin" / "musc-daemon"), "config", "show", "--line", "3"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f'data_dir = "{elsewhere / "runs" / "lines"}"' in result.stdout
    assert "window = 64" in result.stdout and "frames_endpoint" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import daemon; print(daemon.__file__)"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(target)), "the test ran the checkout, not the installed package"
