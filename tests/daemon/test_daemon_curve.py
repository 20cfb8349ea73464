"""A real line with CURVE keys: cameras push frames and nothing else, operators control the line, strangers get
nothing; and a line bound off loopback without keys refuses to start."""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from musc_online.client import ControlClient, FrameSender
from musc_online.synthetic import synthetic_product
from musc_online.transport import CurveClientKeys, generate_keys

from .conftest import FAST, LINE, DaemonProcess

ROOT = Path(__file__).resolve().parents[2]


def _role_folder(folder: Path, public_key: Path) -> Path:
    folder.mkdir()
    (folder / public_key.name).write_bytes(public_key.read_bytes())
    return folder


@pytest.mark.slow
def test_a_camera_key_pushes_frames_but_cannot_shut_the_line_down_and_an_operator_key_can(tmp_path):
    keys = tmp_path / "keys"
    server_public, server_secret = generate_keys(keys, "daemon")
    camera_public, camera_secret = generate_keys(keys, "camera")
    operator_public, operator_secret = generate_keys(keys, "operator")
    _, stranger_secret = generate_keys(tmp_path / "stranger", "stranger")
    camera = CurveClientKeys(camera_secret, server_public)
    operator = CurveClientKeys(operator_secret, server_public)
    daemon = DaemonProcess(
        tmp_path / "lines",
        {
            "MUSC_TRANSPORT__CURVE_SERVER_SECRET": str(server_secret),
            "MUSC_TRANSPORT__CURVE_OPERATOR_CLIENTS": str(_role_folder(tmp_path / "operators", operator_public)),
            "MUSC_TRANSPORT__CURVE_CAMERA_CLIENTS": str(_role_folder(tmp_path / "cameras", camera_public)),
        },
        keys=operator,
    ).start()
    rng = np.random.default_rng(0)
    stranger_keys = CurveClientKeys(stranger_secret, server_public)
    with FrameSender(daemon.settings, line=LINE, keys=stranger_keys, send_timeout_ms=2000) as stranger:
        # The handshake is refused: the frame either waits for a peer that never comes (the send times out) or
        # is queued on the refused connection and discarded with it. Either way it never reaches the daemon.
        with contextlib.suppress(TimeoutError):
            stranger.send(synthetic_product(rng, 96), camera="stranger", frame_id="s0", encoding="png")
        with FrameSender(daemon.settings, line=LINE, keys=camera) as listed:
            for i in range(3):
                listed.send(synthetic_product(rng, 96), camera="cam-1", frame_id=f"c{i}", encoding="png")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and daemon.call("status")["result"]["counts"]["decided"] < 3:
            time.sleep(0.2)
        stranger.close(linger_ms=0)
    counts = daemon.call("status")["result"]["counts"]
    assert counts["received"] == 3 and counts["decided"] == 3  # the camera's three, not the stranger's

    for refused in (camera, stranger_keys, None):  # refused at the handshake: no request reaches the line
        with ControlClient(daemon.settings, keys=refused) as control, pytest.raises(TimeoutError):
            control.call("shutdown", timeout_ms=1500)
    assert daemon.process.poll() is None and daemon.call("status")["ok"]
    log = daemon.log.read_text()
    assert "refused a camera key on the control socket" in log and "refused an unknown key on the frames" in log

    assert daemon.call("shutdown") == {"ok": True, "result": {"stopping": True}}
    assert daemon.process.wait(timeout=60) == 0


def _start(env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "daemon.cli.musc_daemon", "start", "--line", str(LINE), "--no-log-json"]
    env = {**env, **FAST, "MUSC_PATHS__DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_line_off_loopback_without_curve_keys_refuses_to_start_before_touching_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSC_")}
    opened = _start({**env, "MUSC_TRANSPORT__HOST": "0.0.0.0"}, tmp_path / "lines")
    assert opened.returncode == 2, opened.stderr
    assert "cannot start line 3: refusing to bind the line's sockets to 0.0.0.0 without CURVE keys" in opened.stderr
    assert "curve_operator_clients" in opened.stderr
    assert not (tmp_path / "lines" / f"line-{LINE}" / "store.db").exists()  # refused before the store opened

    old = _start({**env, "MUSC_TRANSPORT__CURVE_ALLOWED_CLIENTS": str(tmp_path)}, tmp_path / "lines")
    assert old.returncode == 2
    assert "transport.curve_allowed_clients" in old.stderr and "curve_camera_clients" in old.stderr
