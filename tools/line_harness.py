"""What the tools that drive a real line daemon share: the daemon process and latency summaries (its answers are
gathered by ``musc_online.client.AnswerCollector``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from musc_online.client import ControlClient

LINE = 3
ROOT = Path(__file__).resolve().parents[1]


class HarnessError(RuntimeError):
    """The run cannot go on (the daemon did not start, stopped answering or exited badly)."""


def start_daemon(
    data_dir: Path, base_port: int, log_path: Path, settings: Mapping[str, str], line: int = LINE
) -> subprocess.Popen:
    """``musc-daemon start --line N`` on ``data_dir`` and the port block, with ``MUSC_*`` ``settings``."""
    env = {
        **os.environ,
        **settings,
        "MUSC_PATHS__DATA_DIR": str(data_dir),
        "MUSC_TRANSPORT__BASE_PORT": str(base_port),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "daemon.cli.musc_daemon", "start", "--line", str(line), "--no-log-json"]
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_ready(process: subprocess.Popen, control: ControlClient, timeout_s: float) -> None:
    """Wait until the daemon answers ``status``; a daemon that exits or stays silent is a HarnessError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HarnessError(f"the daemon exited early with code {process.returncode}")
        try:
            if control.call("status", timeout_ms=500)["ok"]:
                return
        except TimeoutError:
            pass
    raise HarnessError(f"the daemon did not answer status within {timeout_s} s")


def summary_ms(values_s: list[float]) -> dict[str, float]:
    """p50, p99 and max of durations in seconds, in milliseconds (zeros when there are none)."""
    if not values_s:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    values = 1e3 * np.asarray(values_s)
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(values.max())}
