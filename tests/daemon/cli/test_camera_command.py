"""``musc-online camera`` end to end over real GigE Vision: Aravis' fake camera on loopback, the camera source
grabbing over GVCP/GVSP into a real daemon process, the camera killed and restarted mid-stream.

GigE Vision discovery broadcasts on every interface, so these tests run in a network namespace of their own
with only ``lo`` (``unshare --net``, as root): the test re-runs itself there, and there it checks that ``lo`` is
the only interface before it starts a camera.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from musc_online.client import AnswerCollector

from ..conftest import LINE, DaemonProcess, wait_until

FAKE_CAMERA = "arv-fake-gv-camera-0.8"
REPO = Path(__file__).resolve().parents[3]
FRAMES = 30


def _only_loopback() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def _in_private_network(nodeid: str) -> None:
    """Run one test again in a new network namespace whose only interface is ``lo``; fail when it fails there."""
    if shutil.which(FAKE_CAMERA) is None:
        pytest.skip(f"{FAKE_CAMERA} is not installed (Debian: apt install aravis-tools gir1.2-aravis-0.8)")
    if importlib.util.find_spec("gi") is None:
        pytest.skip("PyGObject is not installed (pip install 'musc-online[genicam]'; tools/setup_env.sh builds it)")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --net is not permitted here (needs root): no GigE test may broadcast beyond loopback")
    inner = f"ip link set lo up && exec {sys.executable} -m pytest {nodeid} -q -p no:cacheprovider -x"
    result = subprocess.run(["unshare", "--net", "--", "sh", "-c", inner], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout, result.stdout[-3000:]


def _start_fake_camera(log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([FAKE_CAMERA, "-i", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_gige_camera_frames_are_all_decided_through_an_outage(request, tmp_path):
    if not _only_loopback():
        _in_private_network(request.node.nodeid)
        return
    assert _only_loopback()  # the GigE traffic below cannot leave: this namespace has nothing but lo
    camera = _start_fake_camera(tmp_path / "fake-camera.log")
    env = {
        "MUSC_CAMERA__FRAME_RATE": "10",
        "MUSC_CAMERA__GRAB_TIMEOUT_S": "1",
        "MUSC_CAMERA__REOPEN_MIN_S": "0.2",
        "MUSC_CAMERA__REOPEN_MAX_S": "1",
        "MUSC_CAMERA__PIXEL_FORMAT": "BayerRG8",
    }
    daemon = DaemonProcess(tmp_path / "lines", extra_env=env).start()
    collector = AnswerCollector(daemon.settings, LINE)
    source_log = tmp_path / "camera.log"
    command = ["camera", "--line", str(LINE), "--source", "genicam://127.0.0.1", "--count", str(FRAMES)]
    with open(source_log, "wb") as log:
        source = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli.musc_online", *command],
            env=daemon.env,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO,
        )
    try:
        collector.wait_for_count(8, timeout_s=120)
        camera.kill()  # the camera is unplugged mid-stream
        camera.wait()
        wait_until(lambda: "lost" in source_log.read_text(), "the camera source to notice the loss", 30)
        camera = _start_fake_camera(tmp_path / "fake-camera.log")  # and plugged back in
        out, _ = source.communicate(timeout=120)
    finally:
        camera.kill()
        source.kill()
    assert source.returncode == 0, source_log.read_text()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["camera"] == "GV01"
    assert summary["sent"] == summary["grabbed"] == FRAMES  # every frame grabbed went to the daemon
    assert summary["errors"] >= 1 and summary["reopens"] >= 1, summary
    answers = collector.wait_for_count(FRAMES, timeout_s=120)
    collector.close()
    decided = {m["frame_id"] for m in answers if m["topic"].endswith("decision")}
    assert len(decided) == FRAMES, [m for m in answers if not m["topic"].endswith("decision")]
    assert all(m["camera"] == "GV01" for m in answers)
    counts = daemon.call("status")["result"]["counts"]
    assert counts["received"] == counts["decided"] == FRAMES
    assert daemon.stop(signal.SIGTERM) == 0
