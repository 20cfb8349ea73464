"""The OPC UA output of a real daemon process, with an asyncua client playing the PLC: Trigger, Busy,
ResultReady with the verdict the line decided, Ack; counters, band and state beside it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from daemon.outputs.opcua import NAMESPACE
from musc_online.client import AnswerCollector, FrameSender
from musc_online.synthetic import synthetic_product

from ..conftest import LINE, DaemonProcess
from .conftest import free_port

sync = pytest.importorskip("asyncua.sync", reason="asyncua is not installed (pip install 'musc-online[line]')")


class Plc:
    """A PLC's view of the line: its nodes by name, read and written over OPC UA."""

    def __init__(self, endpoint: str) -> None:
        _wait_for_server(endpoint, 60)
        self.client = sync.Client(endpoint)
        self.client.connect()
        index = self.client.get_namespace_index(NAMESPACE)
        root = self.client.nodes.objects.get_child(f"{index}:Line{LINE}")
        self.nodes = {"State": root.get_child(f"{index}:State")}
        for folder in ("LastResult", "Counters", "Band", "Handshake"):
            for node in root.get_child(f"{index}:{folder}").get_children():
                self.nodes[node.read_browse_name().Name] = node

    def __getitem__(self, name: str):
        return self.nodes[name].read_value()

    def __setitem__(self, name: str, value) -> None:
        node = self.nodes[name]
        node.write_value(sync.ua.Variant(value, node.read_data_type_as_variant_type()))

    def wait(self, name: str, value, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self[name] != value:
            assert time.monotonic() < deadline, f"{name} did not become {value!r} (it is {self[name]!r})"
            time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()


@pytest.mark.slow
def test_a_plc_triggers_reads_the_verdict_and_acknowledges(tmp_path):
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    env = {"MUSC_OPCUA__ENABLED": "true", "MUSC_OPCUA__ENDPOINT": endpoint, "MUSC_OPCUA__RESULT_TIMEOUT_S": "60"}
    daemon = DaemonProcess(tmp_path / "lines", extra_env=env).start()
    plc = Plc(endpoint)
    try:
        _handshakes(daemon, plc)
    finally:
        plc.close()


def _handshakes(daemon: DaemonProcess, plc: Plc) -> None:
    collector = AnswerCollector(daemon.settings, LINE)
    rng = np.random.default_rng(0)
    assert plc["State"] == "ready" and plc["Busy"] is False and plc["ResultReady"] is False
    with FrameSender(daemon.settings, line=LINE) as camera:
        for round_ in range(3):
            part = f"part-{round_}"
            plc["TriggerPartId"] = part
            plc["Trigger"] = True
            plc.wait("Busy", True)  # the line took the trigger ...
            assert plc["Trigger"] is False and plc["ResultReady"] is False
            camera.send(synthetic_product(rng, 96, defective=round_ == 2), camera="cam-1", frame_id=part)
            plc.wait("ResultReady", True)  # ... and answers it
            assert plc["Busy"] is False and plc["PartId"] == part
            collector.wait_for([part], stall_s=30)
            decided = collector.arrived[part][1]
            assert plc["Verdict"] == decided["label"] and plc["Score"] == pytest.approx(decided["score"])
            assert plc["CameraTimestamp"].timestamp() == pytest.approx(decided["timestamp"], abs=1e-3)
            plc["Ack"] = True
            plc.wait("ResultReady", False)
            plc.wait("Ack", False)
    assert plc["Decided"] == 3 and plc["Ok"] + plc["Unsure"] + plc["Defect"] == 3 and plc["Refused"] == 0
    assert plc["High"] >= plc["Low"]
    status = daemon.call("status")["result"]["outputs"]["opcua"]
    assert status["connected"] and status["handshakes"] == 3 and status["dropped"] == 0
    collector.close()


@pytest.mark.slow
def test_a_software_triggered_camera_captures_on_the_plcs_trigger(tmp_path):
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    env = {
        "MUSC_OPCUA__ENABLED": "true",
        "MUSC_OPCUA__ENDPOINT": endpoint,
        "MUSC_OPCUA__RESULT_TIMEOUT_S": "60",
        "MUSC_CAMERA__TRIGGER": "software",
    }
    daemon = DaemonProcess(tmp_path / "lines", extra_env=env).start()
    camera = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli.musc_online", "camera", "--line", str(LINE), "--source", "synthetic"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    plc = Plc(endpoint)
    try:
        for part in ("plc-part-7", ""):  # the PLC names the part, or leaves it to the camera
            plc["TriggerPartId"] = part
            plc["Trigger"] = True
            plc.wait("ResultReady", True)  # the camera captured on the trigger and the line decided the frame
            assert plc["Verdict"] in ("ok", "unsure", "defect")
            assert plc["PartId"] == part if part else plc["PartId"].startswith("synthetic-")
            plc["Ack"] = True
            plc.wait("ResultReady", False)
        assert plc["Decided"] == 2  # one frame per trigger, none in between
    finally:
        plc.close()
        camera.send_signal(signal.SIGTERM)
        out, err = camera.communicate(timeout=30)
    assert camera.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["sent"] == 2


def test_with_a_users_file_only_its_accounts_log_in(tmp_path):
    from argon2 import PasswordHasher
    from prometheus_client import CollectorRegistry

    from daemon.outputs.metrics import OutputFamilies
    from daemon.outputs.opcua import OpcuaOutput
    from daemon.settings import OpcuaSettings

    users = tmp_path / "plc-users"
    users.write_text(f"plc:{PasswordHasher().hash('s3cret')}\n")
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    output = OpcuaOutput(
        OpcuaSettings(enabled=True, users_file=users), LINE, endpoint, OutputFamilies(CollectorRegistry(), LINE).of("o")
    )
    output.start(lambda: (True, "ready"))
    try:
        plc = _logged_in(endpoint, "plc", "s3cret")  # the account reads the line's state
        index = plc.get_namespace_index(NAMESPACE)
        state = plc.nodes.objects.get_child([f"{index}:Line{LINE}", f"{index}:State"])
        deadline = time.monotonic() + 10
        while state.read_value() != "ready":
            assert time.monotonic() < deadline, state.read_value()
            time.sleep(0.01)
        plc.disconnect()
        refusals = []
        for user, password in ((None, None), ("plc", "wrong"), ("intruder", "s3cret")):
            with pytest.raises(Exception) as refused:
                _logged_in(endpoint, user, password).disconnect()
            refusals.append(type(refused.value).__name__)
        assert refusals == ["BadIdentityTokenRejected", "BadUserAccessDenied", "BadUserAccessDenied"], refusals
    finally:
        output.stop()


def _logged_in(endpoint: str, user: str | None, password: str | None):
    _wait_for_server(endpoint, 30)
    client = sync.Client(endpoint)
    if user:
        client.set_user(user)
        client.set_password(password)
    try:
        client.connect()
    except Exception:
        client.tloop.stop()
        raise
    return client


def _wait_for_server(endpoint: str, timeout_s: float) -> None:
    """Wait until the OPC UA server accepts connections (it starts beside the line, moments after it)."""
    deadline = time.monotonic() + timeout_s
    host, port = endpoint.removeprefix("opc.tcp://").split(":")
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"no OPC UA server on {endpoint}"
            time.sleep(0.05)
