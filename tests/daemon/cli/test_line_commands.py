"""The line tools of musc-online: publish, status, band, against real processes (the demo: tests/test_readme.py)."""

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from daemon.cli.line_commands import DEMO_ENCODING, DEMO_JUDGES, DEMO_SEED, _demo_judges
from daemon.cli.musc_online import app
from musc_online.client import FrameSender
from musc_online.datasets import images_in, load_image
from musc_online.protocol import decode_frame, encode_frame
from musc_online.synthetic import camera_frames, synthetic_product

from ..conftest import FAST, LINE, DaemonProcess, free_port_block

runner = CliRunner()


@pytest.fixture
def line_env(tmp_path, monkeypatch):
    env = {
        **FAST,
        "MUSC_PATHS__DATA_DIR": str(tmp_path / "lines"),
        "MUSC_TRANSPORT__BASE_PORT": str(free_port_block(LINE)),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_the_demo_judges_are_stored_as_its_camera_sends_frames(tmp_path):
    folder = tmp_path / "demo-judges"
    folder.mkdir()
    (folder / "good-000.png").write_bytes(b"an earlier demo's lossless judge")
    judges = images_in(_demo_judges(folder))
    assert len(judges) == DEMO_JUDGES and all(path.suffix == ".jpg" for path in judges)
    part = next(camera_frames("synthetic", seed=DEMO_SEED, defect_rate=0.0))
    message = encode_frame(part, line=LINE, camera="cam-1", frame_id="f", encoding=DEMO_ENCODING)
    as_received = decode_frame(message)[1]
    np.testing.assert_array_equal(load_image(judges[0]), as_received)  # the pixels the daemon scores of a frame
    assert not np.array_equal(as_received, part)  # lossy: a lossless judge would be a smoother part


def test_status_without_a_daemon_reads_the_store(line_env):
    result = runner.invoke(app, ["status", "--line", str(LINE), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["live"] is False
    assert status["counts"]["received"] == 0
    table = runner.invoke(app, ["status", "--line", str(LINE)])
    assert "daemon not running" in table.stdout


def test_publish_refuses_a_missing_folder(line_env, tmp_path):
    result = runner.invoke(app, ["publish", "--line", str(LINE), "--source", str(tmp_path / "none"), "--count", "1"])
    assert result.exit_code == 2
    assert "none" in result.output


def test_bad_config_value_is_named(line_env, monkeypatch):
    monkeypatch.setenv("MUSC_ONLINE__WINDOW", "0")
    result = runner.invoke(app, ["status", "--line", str(LINE)])
    assert result.exit_code == 2
    assert "online.window" in result.output


@pytest.mark.slow
def test_band_show_set_and_recalibrate_reach_the_running_line(tmp_path, monkeypatch):
    daemon = DaemonProcess(tmp_path / "lines").start()
    for key, value in daemon.env.items():
        if key.startswith("MUSC_"):
            monkeypatch.setenv(key, value)
    rng = np.random.default_rng(0)
    with FrameSender(daemon.settings, line=LINE) as sender:
        for i in range(40):  # the window (16), then 16 steady scores to calibrate from, and some to spare
            sender.send(synthetic_product(rng, 160), camera="cam-1", frame_id=f"b{i}", encoding="png")
    deadline = time.monotonic() + 120
    while daemon.call("status")["result"]["counts"]["decided"] < 40 and time.monotonic() < deadline:
        time.sleep(0.2)

    def band(*args: str):
        return runner.invoke(app, ["band", *args, "--line", str(LINE)])

    assert "(calibrated)" in band("show").stdout
    shown = runner.invoke(app, ["status", "--line", str(LINE)]).stdout
    assert "expected per 1,000 good parts" in shown and "20.0 flagged / 2.0 false alarms" in shown
    assert "flagged per 1,000 parts (final)" in shown and "(good parts and defects)" in shown
    rates = json.loads(runner.invoke(app, ["status", "--line", str(LINE), "--json"]).stdout)["scorer"]
    assert 0 < rates["expected_per_1000"]["false_alarms"] < rates["expected_per_1000"]["flagged"] < 1000
    changed = band("set", "0.1", "0.2", "--operator", "ann")
    assert changed.exit_code == 0 and "band 0.1000 / 0.2000 (operator)" in changed.stdout
    assert band("set", "0.3", "0.2").exit_code == 2
    assert "(calibrated)" in band("recalibrate").stdout
    status = runner.invoke(app, ["status", "--line", str(LINE)])
    assert "ann: band set" in status.stdout or "band recalibrate" in status.stdout
    assert daemon.stop() == 0
    assert band("show").exit_code == 2  # nothing answers: said, not hung
