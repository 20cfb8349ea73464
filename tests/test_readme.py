"""Every command block of README.md runs here, so the first page a user reads cannot go stale.

``AS_TESTED`` maps each README command to how this test runs it: the same command with test-sized counts
where the real one takes minutes, on a throw-away line folder and port block. A README command missing
from it fails the first test, so a new command cannot slip in untested.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from musc_online.synthetic import synthetic_product
from musc_online.transport import free_port_block

ROOT = Path(__file__).resolve().parents[1]
SMALL = {  # the quick settings of the daemon tests: the real backbone, small inputs
    "MUSC_MODEL__IMAGE_SIZE": "128",
    "MUSC_ONLINE__WINDOW": "16",
    "MUSC_ONLINE__JUDGES_PER_FRAME": "4",
    "MUSC_ONLINE__CALIBRATION_SCORES": "16",
    "MUSC_MUSC__R_LIST": "[1, 3]",
}
SETUP, TESTS = "tools/setup_env.sh", ".venv/bin/python -m pytest"
LINE_IO_CONFIG = "--config config/examples/line-io.toml"
LINE_IO = {  # "Plugging into a line": the broker on a free port ({mqtt}), the subscriber stopping after 2 messages
    "arv-fake-gv-camera-0.8 -i 127.0.0.1": "arv-fake-gv-camera-0.8 -i 127.0.0.1",
    "mosquitto": "mosquitto -p {mqtt}",
    **{
        command: command
        for command in (
            f".venv/bin/musc-daemon start --line 3 {LINE_IO_CONFIG}",
            f".venv/bin/musc-online camera --line 3 {LINE_IO_CONFIG}",
        )
    },
    "mosquitto_sub -t musc/line/3/# -v": "mosquitto_sub -p {mqtt} -t musc/line/3/# -v -C 2 -W 120",
    f".venv/bin/musc-online plc --line 3 {LINE_IO_CONFIG} --trigger part-1": (
        f".venv/bin/musc-online plc --line 3 {LINE_IO_CONFIG} --trigger part-1 --timeout 120"
    ),
}
AS_TESTED = {
    f"{SETUP} && .venv/bin/musc-online demo --line 3": ".venv/bin/musc-online demo --line 3 --count 72 --rate 15",
    ".venv/bin/python -m pytest": None,  # CI runs it: this very test is part of it
    ".venv/bin/musc-daemon config show --line 3": ".venv/bin/musc-daemon config show --line 3",
    ".venv/bin/musc-daemon start --line 3": ".venv/bin/musc-daemon start --line 3",
    ".venv/bin/musc-online publish --line 3 --source synthetic": (
        ".venv/bin/musc-online publish --line 3 --source synthetic --count 24 --rate 20"
    ),
    ".venv/bin/musc-online status --line 3": ".venv/bin/musc-online status --line 3",
    ".venv/bin/musc-online review --line 3": ".venv/bin/musc-online review --line 3",
    ".venv/bin/musc-online band recalibrate --line 3": ".venv/bin/musc-online band recalibrate --line 3",
    ".venv/bin/musc-online eval --root ../shared/data/mvtec_ad --category bottle --backbone efficientnet_lite0 "
    "--size 320 --json runs/bottle.json --heatmaps runs/heatmaps": ".venv/bin/musc-online eval --root "
    "../shared/data/mvtec_ad --category bottle --backbone efficientnet_lite0 --size 96 --json {tmp}/bottle.json "
    "--heatmaps {tmp}/heatmaps",
    ".venv/bin/musc-online replay --root ../shared/data/mvtec_ad --category bottle --size 320 --window 64 --judges "
    "../shared/data/mvtec_ad/bottle/train/good --compare-batch": ".venv/bin/musc-online replay --root "
    "../shared/data/mvtec_ad --category bottle --size 96 --window 16 --judges "
    "../shared/data/mvtec_ad/bottle/train/good --compare-batch",
    ".venv/bin/musc-online replay --root ../shared/data/mvtec_ad --category bottle --size 256 --stream bad_batch "
    "--operator-corrects 1 --records runs/bad_batch.jsonl --timeline runs/bad_batch.png": ".venv/bin/musc-online "
    "replay --root ../shared/data/mvtec_ad --category bottle --size 96 --window 8 --stream bad_batch --length 40 "
    "--operator-corrects 1 --records {tmp}/bad_batch.jsonl --timeline {tmp}/bad_batch.png",
    ".venv/bin/musc-online judges add ../shared/data/mvtec_ad/bottle/train/good --line 3": (
        ".venv/bin/musc-online judges add {tmp}/good --line 3"  # a few synthetic good parts: no dataset needed
    ),
    ".venv/bin/musc-online judges export --store bottle-v1 --line 3": (
        ".venv/bin/musc-online judges export --store bottle-v1 --line 3"
    ),
    ".venv/bin/musc-online accounts add ann --role operator": (
        ".venv/bin/musc-online accounts add ann --role operator --password-stdin"
    ),
    ".venv/bin/musc-online review --web --host 0.0.0.0 --port 8080": (
        ".venv/bin/musc-online review --web --host 0.0.0.0 --port {port}"
    ),
    **LINE_IO,
}


def readme_commands() -> list[str]:
    """The commands of README.md's bash blocks, one per line, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = (line.split("  #")[0].strip() for block in blocks for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run(command: str, env: dict[str, str], tmp: Path, stdin: str = "", timeout: float = 600) -> str:
    words = shlex.split(command.format(tmp=tmp))
    result = subprocess.run(
        words, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def line_env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        **SMALL,
        "MUSC_PATHS__DATA_DIR": str(tmp_path / "lines"),
        "MUSC_TRANSPORT__BASE_PORT": str(free_port_block(3)),
        "HF_HUB_OFFLINE": "1",
    }


def test_every_readme_command_is_run_here():
    assert sorted(readme_commands()) == sorted(AS_TESTED), "a README command changed: update AS_TESTED"


def test_setup_and_the_test_command_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"bash {SETUP}" in ci and TESTS in ci


@pytest.mark.slow
def test_the_quick_start_runs_the_line_and_decides_with_a_calibrated_band(line_env, tmp_path):
    output = run(AS_TESTED[f"{SETUP} && .venv/bin/musc-online demo --line 3"], line_env, tmp_path)
    decisions = [line for line in output.splitlines() if line.startswith("cam-1-")]
    assert len(decisions) == 72 and "provisional" in decisions[0], output
    # Calibrated within the run whatever the load: the seeds fall due by the 32nd frame and the line scores one
    # after each frame it answers, so the band is final from the 64th frame at the latest.
    assert not any("provisional" in line for line in decisions[-6:]), output
    assert "(calibrated)" in output and "frames received" in output
    assert "stopped cleanly" in (tmp_path / "lines" / "line-3" / "daemon.log").read_text()


@pytest.mark.slow
def test_the_line_commands_in_their_order(line_env, tmp_path):
    run(AS_TESTED[".venv/bin/musc-daemon config show --line 3"], line_env, tmp_path)
    words = shlex.split(AS_TESTED[".venv/bin/musc-daemon start --line 3"])
    daemon = subprocess.Popen(words, cwd=ROOT, env=line_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        status = AS_TESTED[".venv/bin/musc-online status --line 3"]
        deadline = time.monotonic() + 120
        while "daemon not running" in run(status, line_env, tmp_path) and time.monotonic() < deadline:
            time.sleep(0.5)
        run(AS_TESTED[".venv/bin/musc-online publish --line 3 --source synthetic"], line_env, tmp_path)
        # publish returns once its frames are sent; a slow machine may still be scoring the last ones
        counts = json.loads(run(status + " --json", line_env, tmp_path))["counts"]
        while counts["received"] < 24 or counts["pending"]:
            assert time.monotonic() < deadline, counts
            time.sleep(0.5)
            counts = json.loads(run(status + " --json", line_env, tmp_path))["counts"]
        assert counts["decided"] + counts["refused"] == 24 and "daemon not running" not in run(
            status, line_env, tmp_path
        )
        run(AS_TESTED[".venv/bin/musc-online review --line 3"], line_env, tmp_path, stdin="q\n")
        recalibrated = run(AS_TESTED[".venv/bin/musc-online band recalibrate --line 3"], line_env, tmp_path)
        assert "(calibrated)" in recalibrated
        good = tmp_path / "good"
        good.mkdir()
        rng = np.random.default_rng(5)
        for i in range(3):
            Image.fromarray(synthetic_product(rng, 128)).save(good / f"part{i}.png")
        judges = ".venv/bin/musc-online judges add ../shared/data/mvtec_ad/bottle/train/good --line 3"
        assert json.loads(run(AS_TESTED[judges], line_env, tmp_path)) == {"added": 3}
        export = AS_TESTED[".venv/bin/musc-online judges export --store bottle-v1 --line 3"]
        assert json.loads(run(export, line_env, tmp_path)) == {"exported": 3, "store_name": "bottle-v1"}
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, daemon.stderr.read().decode()[-2000:]


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("verb", ["eval", "replay", "replay --stream"])
def test_evaluation_and_replay_on_real_data(mvtec_root, line_env, tmp_path, verb):
    stream = verb.endswith("--stream")
    (command,) = [
        tested
        for readme, tested in AS_TESTED.items()
        if readme.startswith(f".venv/bin/musc-online {verb.split()[0]} ") and ("--stream" in readme) == stream
    ]
    output = run(command, line_env, tmp_path)
    if not stream:
        assert "I-AUROC" in output
        return
    assert "escapes" in output and "alarms" in output and "AUROC" in output
    assert len((tmp_path / "bad_batch.jsonl").read_text().splitlines()) == 40
    assert (tmp_path / "bad_batch.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_an_account_then_the_review_station_off_loopback(line_env, tmp_path):
    add = AS_TESTED[".venv/bin/musc-online accounts add ann --role operator"]
    run(add, line_env, tmp_path, stdin="correct horse battery\n")
    port = free_port_block(0)
    words = shlex.split(AS_TESTED[".venv/bin/musc-online review --web --host 0.0.0.0 --port 8080"].format(port=port))
    station = subprocess.Popen(words, cwd=ROOT, env=line_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = station.stdout.readline()
        assert f":{port}/" in banner and "login required" in banner, banner + station.stderr.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        with pytest.raises(urllib.error.HTTPError) as refused:  # nothing but the page without a login
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/me", timeout=10)
        assert refused.value.code == 401
    finally:
        station.send_signal(signal.SIGINT)
        station.wait(timeout=30)


@pytest.mark.slow
def test_plugging_into_a_line_from_a_fake_gige_camera_to_opc_ua_and_mqtt(line_env, tmp_path):
    if not shutil.which("arv-fake-gv-camera-0.8") or not shutil.which("mosquitto_sub"):
        pytest.skip("needs Debian's aravis-tools, mosquitto and mosquitto-clients (.ci/run installs them)")
    if importlib.util.find_spec("gi") is None:
        pytest.skip("PyGObject is not installed (pip install 'musc-online[genicam]'; tools/setup_env.sh builds it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**line_env, "MUSC_MQTT__URL": f"mqtt://127.0.0.1:{port}"}
    commands = [command.replace("{mqtt}", str(port)) for command in LINE_IO.values()]
    camera, broker, daemon, source, subscriber, plc = commands
    started = []
    try:
        for command in (camera, broker, daemon):
            started.append(subprocess.Popen(shlex.split(command), cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
        source_log = tmp_path / "camera.log"
        with open(source_log, "wb") as log:
            started.append(subprocess.Popen(shlex.split(source), cwd=ROOT, env=env, stdout=log, stderr=log))
        deadline = time.monotonic() + 120  # a person starts the PLC once the camera listens for its triggers
        while "triggered by the PLC" not in source_log.read_text():
            assert time.monotonic() < deadline and started[-1].poll() is None, source_log.read_text()
            time.sleep(0.1)
        watcher = subprocess.Popen(shlex.split(subscriber), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        started.append(watcher)
        verdict = json.loads(run(plc, env, tmp_path))
        assert verdict["PartId"] == "part-1" and verdict["Verdict"] in ("ok", "unsure", "defect")
        assert verdict["ResultReady"] is True and verdict["Decided"] == 1
        messages = watcher.communicate(timeout=120)[0].splitlines()
        assert messages[0].startswith("musc/line/3/status ") and '"online"' in messages[0]
        topic, payload = messages[1].split(" ", 1)
        assert topic == "musc/line/3/decision" and json.loads(payload)["frame_id"] == "part-1"
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
