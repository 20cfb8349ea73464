"""The command-line apps: commands that do not score start without torch or FAISS, and each answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import LINE, free_port_block

HEAVY = ("torch", "faiss", "timm", "open_clip", "sklearn")
REPORT = f"""
import json, runpy, sys
module, *argv = sys.argv[1:]
sys.argv = [module, *argv]
try:
    runpy.run_module(module, run_name="__main__")
except SystemExit as stop:
    code = stop.code
else:
    code = 0
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print("REPORT " + json.dumps({{"exit": code, "heavy": heavy}}), file=sys.stderr)
"""


def run(module: str, *args: str, env: dict[str, str]) -> dict:
    """Run an app in a fresh interpreter; what it exited with and which heavy modules it had imported."""
    result = subprocess.run(
        [sys.executable, "-c", REPORT, module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    line = next(line for line in result.stderr.splitlines() if line.startswith("REPORT "))
    return {**json.loads(line.removeprefix("REPORT ")), "stdout": result.stdout, "stderr": result.stderr}


@pytest.fixture
def stopped_line(tmp_path) -> dict[str, str]:
    return {"MUSC_PATHS__DATA_DIR": str(tmp_path / "lines"), "MUSC_TRANSPORT__BASE_PORT": str(free_port_block(LINE))}


@pytest.mark.parametrize(
    ("module", "args", "exit_code"),
    [
        ("daemon.cli.musc_online", ["--help"], 0),
        ("daemon.cli.musc_online", ["status", "--line", str(LINE)], 0),
        ("daemon.cli.musc_online", ["review", "list", "--line", str(LINE)], 0),
        ("daemon.cli.musc_online", ["publish", "--line", str(LINE), "--count", "0"], 0),
        ("daemon.cli.musc_online", ["judges", "list", "--line", str(LINE)], 2),  # nothing runs: said, not hung
        ("daemon.cli.musc_online", ["band", "show", "--line", str(LINE)], 2),
        ("daemon.cli.musc_daemon", ["config", "show", "--line", str(LINE)], 0),
        ("daemon.cli.musc_daemon", ["--help"], 0),
    ],
)
def test_commands_that_do_not_score_import_neither_torch_nor_faiss(stopped_line, module, args, exit_code):
    report = run(module, *args, env=stopped_line)
    assert report["exit"] == exit_code, report["stdout"] + report["stderr"]
    assert report["heavy"] == [], f"{' '.join(args)} imported {report['heavy']}"


def test_a_scoring_command_does_load_the_model(stopped_line, tmp_path):
    """The check above can fail: eval imports torch once it runs."""
    report = run("daemon.cli.musc_online", "eval", "--root", str(tmp_path), "--category", "none", env=stopped_line)
    assert report["exit"] == 2 and "torch" in report["heavy"]


def test_config_defaults_prints_the_shipped_defaults_file():
    result = subprocess.run(
        [sys.executable, "-m", "daemon.cli.musc_daemon", "config", "defaults"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.stdout == (Path(__file__).resolve().parents[3] / "config" / "default.toml").read_text()


def test_a_line_whose_store_is_unreachable_exits_1_so_a_supervisor_retries(stopped_line):
    unreachable = {**stopped_line, "MUSC_STORE__URL": "postgresql+psycopg://musc:s3cret@127.0.0.1:9/musc"}
    report = run("daemon.cli.musc_daemon", "start", "--line", str(LINE), env=unreachable)
    assert report["exit"] == 1, report["stderr"]
    assert "cannot reach the store at postgresql+psycopg://musc:***@127.0.0.1:9/musc" in report["stderr"]
    assert "s3cret" not in report["stderr"]
