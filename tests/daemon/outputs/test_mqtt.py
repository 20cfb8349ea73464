"""The MQTT output with a real Mosquitto broker: every decision arrives, through a 10 s broker outage; a full
queue drops the oldest and counts them; the retained status says online, and the last will offline."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from daemon.outputs.metrics import OutputFamilies
from daemon.outputs.mqtt import MqttOutput
from daemon.settings import MqttSettings
from musc_online.client import FrameSender
from musc_online.synthetic import synthetic_product
from musc_online.transport import line_ports

from ..conftest import LINE, DaemonProcess
from .conftest import MOSQUITTO, Broker, free_port

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'musc-online[line]')")
OUTAGE_S = 10


class Plant:
    """A plant's subscriber with a persistent session: what it missed while away, the broker keeps for it."""

    def __init__(self, port: int) -> None:
        self.messages: dict[str, list[dict]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plant-dashboard", clean_session=False)
        self.client.on_connect = lambda client, *_: client.subscribe(f"musc/line/{LINE}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.setdefault(message.topic, []).append(json.loads(message.payload))

    def frame_ids(self) -> set[str]:
        with self._lock:
            return {m["frame_id"] for m in self.messages.get(f"musc/line/{LINE}/decision", [])}

    def last_state(self) -> str | None:
        with self._lock:
            states = self.messages.get(f"musc/line/{LINE}/status", [])
            return states[-1]["state"] if states else None

    def wait(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _send(sender: FrameSender, first: int, count: int, period_s: float) -> list[str]:
    ids = [f"part-{i:04d}" for i in range(first, first + count)]
    rng = np.random.default_rng(first)
    for frame_id in ids:
        sender.send(synthetic_product(rng, 96), camera="cam-1", frame_id=frame_id)
        time.sleep(period_s)  # the line's pace (2 frames/s through the outage), not a synchronisation
    return ids


@pytest.mark.slow
def test_every_decision_reaches_the_broker_through_an_outage(tmp_path, broker):
    plant = Plant(broker.port)
    env = {"MUSC_MQTT__ENABLED": "true", "MUSC_MQTT__URL": broker.url, "MUSC_MQTT__KEEPALIVE_S": "2"}
    daemon = DaemonProcess(tmp_path / "lines", extra_env=env).start()
    plant.wait(lambda: plant.last_state() == "online", 30, "the retained birth message")
    sender = FrameSender(daemon.settings, line=LINE)
    sent = _send(sender, 0, 8, 0)
    plant.wait(lambda: set(sent) <= plant.frame_ids(), 60, "the first decisions")

    broker.stop()
    sent += _send(sender, 8, 2 * OUTAGE_S, 0.5)  # 10 s of frames while the broker is down
    status = daemon.call("status")["result"]
    assert status["counts"]["decided"] == len(sent)  # scoring went on
    assert status["outputs"]["mqtt"]["connected"] is False
    assert status["outputs"]["mqtt"]["queued"] >= 1
    http = f"http://127.0.0.1:{line_ports(LINE, daemon.base_port)[3]}"
    with urllib.request.urlopen(f"{http}/readyz") as reply:  # still ready: the output catches up later
        assert reply.status == 200 and "mqtt not connected" in reply.read().decode()

    broker.start()
    sent += _send(sender, 8 + 2 * OUTAGE_S, 6, 0)
    plant.wait(lambda: set(sent) <= plant.frame_ids(), 60, "every decision after the broker returned")
    sender.close()
    mqtt_status = daemon.call("status")["result"]["outputs"]["mqtt"]
    assert mqtt_status["connected"] and mqtt_status["dropped"] == 0 and mqtt_status["sent"] >= len(sent)
    with urllib.request.urlopen(f"{http}/metrics") as reply:
        metrics = reply.read().decode()
    assert f'musc_output_dropped_total{{line="{LINE}",output="mqtt"}} 0.0' in metrics
    assert f'musc_output_up{{line="{LINE}",output="mqtt"}} 1.0' in metrics

    daemon.stop(signal.SIGKILL)  # the line vanishes: the broker sends its last will
    plant.wait(lambda: plant.last_state() == "offline", 30, "the last will")
    plant.close()


def test_a_full_queue_drops_the_oldest_and_counts_them():
    registry = CollectorRegistry()
    settings = MqttSettings(enabled=True, url=f"mqtt://127.0.0.1:{free_port()}", queue_size=3)
    output = MqttOutput(settings, LINE, OutputFamilies(registry, LINE).of("mqtt"))
    output.start()  # nothing listens there: it keeps trying, and never blocks the line
    for i in range(5):
        output.offer({"frame_id": f"f{i}"})
    state = output.status()
    assert state["queued"] == 3 and state["dropped"] == 2 and state["connected"] is False
    deadline = time.monotonic() + 10
    while "cannot reach the broker" not in output.status()["last_error"]:
        assert time.monotonic() < deadline, output.status()
        time.sleep(0.05)
    assert output.queue.peek(0) == {"frame_id": "f2"}  # the newest are kept
    assert f'musc_output_dropped_total{{line="{LINE}",output="mqtt"}} 2.0' in generate_latest(registry).decode()
    output.stop()


def test_broker_credentials_are_used_and_a_refusal_is_reported(tmp_path):
    if not Path(MOSQUITTO).is_file() or not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto is not installed (Debian: apt install mosquitto)")
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "line3", "s3cret"], check=True)
    broker = Broker(tmp_path / "broker", f"allow_anonymous false\npassword_file {passwords}\n").start()
    try:
        plant = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plant")
        plant.username_pw_set("line3", "s3cret")
        received: list[bytes] = []
        plant.on_connect = lambda client, *_: client.subscribe(f"musc/line/{LINE}/decision", qos=1)
        plant.on_message = lambda client, userdata, message: received.append(message.payload)
        plant.connect("127.0.0.1", broker.port)
        plant.loop_start()
        outputs = {}
        for password in ("wrong", "s3cret"):
            (tmp_path / password).write_text(password + "\n")
            settings = MqttSettings(enabled=True, url=broker.url, username="line3", password_file=tmp_path / password)
            outputs[password] = MqttOutput(settings, LINE, OutputFamilies(CollectorRegistry(), LINE).of("mqtt"))
            outputs[password].start()
            outputs[password].offer({"frame_id": f"with-{password}"})
        deadline = time.monotonic() + 30
        while not (received and outputs["wrong"].last_error):
            assert time.monotonic() < deadline, (received, outputs["wrong"].status())
            time.sleep(0.05)
        assert [json.loads(payload)["frame_id"] for payload in received] == ["with-s3cret"]
        refused = outputs["wrong"].status()
        assert not refused["connected"] and refused["queued"] == 1 and "refused" in refused["last_error"]
        for output in outputs.values():
            output.stop()
        plant.loop_stop()
    finally:
        broker.stop()
