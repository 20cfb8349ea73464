"""Line I/O: a PLC triggers Aravis' fake GigE camera over OPC UA, the daemon decides, the verdict comes back.

The PLC (an asyncua client) writes Trigger at ``--rate`` for ``--seconds``; the line raises Busy, the camera
source (`musc-online camera`, software trigger) captures one frame over real GVCP/GVSP, the daemon decides it,
ResultReady rises and the PLC acknowledges; every decision also goes to a real Mosquitto broker. Measured:
exposure-to-ResultReady and decision-to-MQTT-delivery latency (p50 / p99), frames grabbed vs decided, and the
camera source's CPU time per frame. GigE discovery must not leave the machine, so it runs only in a network
namespace whose only interface is lo:

    unshare --net sh -c 'ip link set lo up && .venv/bin/python tools/bench_lineio.py --json runs/lineio.json'
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_common import cpu_name
from line_harness import LINE, ROOT, start_daemon, summary_ms, wait_ready

from daemon.outputs.opcua import NAMESPACE
from musc_online.client import ControlClient
from musc_online.transport import TransportSettings, free_port_block

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s") from None
            time.sleep(0.05)


class MqttLog:
    """Every decision the broker delivers, with its arrival time."""

    def __init__(self, port: int) -> None:
        from paho.mqtt import client as mqtt

        self.delays: list[float] = []
        self.frames: set[str] = set()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-plant")
        self.client.on_connect = lambda client, *_: client.subscribe(f"musc/line/{LINE}/decision", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        arrived = time.time()
        payload = json.loads(message.payload)
        with self._lock:
            self.delays.append(arrived - payload["decided_at"])
            self.frames.add(payload["frame_id"])


def _plc_cycles(endpoint: str, rate: float, seconds: float) -> tuple[list[float], int, int, float]:
    """Trigger, wait for ResultReady, Ack, ``rate * seconds`` times at ``rate`` at most (a cycle starts only after
    the last one's Ack): exposure-to-ResultReady latencies, triggers, timeouts and the seconds it took."""
    from asyncua import sync, ua

    client = sync.Client(endpoint)
    client.connect()
    try:
        index = client.get_namespace_index(NAMESPACE)
        root = client.nodes.objects.get_child(f"{index}:Line{LINE}")
        node = {n: root.get_child([f"{index}:{folder}", f"{index}:{n}"]) for folder, n in _NODES}
        latencies, timeouts, period = [], 0, 1.0 / rate
        started = time.monotonic()
        count = int(seconds * rate)
        for i in range(count):
            time.sleep(max(0.0, started + i * period - time.monotonic()))
            node["TriggerPartId"].write_value(ua.Variant(f"bench-{i:05d}", ua.VariantType.String))
            node["Trigger"].write_value(ua.Variant(True, ua.VariantType.Boolean))
            while not node["ResultReady"].read_value():
                time.sleep(0.001)
            ready_at = time.time()
            if node["Verdict"].read_value() == "timeout":
                timeouts += 1
            else:
                latencies.append(ready_at - node["CameraTimestamp"].read_value().timestamp())
            node["Ack"].write_value(ua.Variant(True, ua.VariantType.Boolean))
            while node["ResultReady"].read_value():
                time.sleep(0.001)
        return latencies, count, timeouts, time.monotonic() - started
    finally:
        client.disconnect()


_NODES = [
    ("Handshake", "Trigger"),
    ("Handshake", "TriggerPartId"),
    ("Handshake", "ResultReady"),
    ("Handshake", "Ack"),
    ("LastResult", "Verdict"),
    ("LastResult", "CameraTimestamp"),
]


def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    mqtt_port, opcua_port, base_port = _free_port(), _free_port(), free_port_block(LINE)
    (work / "mosquitto.conf").write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n")
    settings = {
        "MUSC_MODEL__BACKBONE": args.backbone,
        "MUSC_MODEL__IMAGE_SIZE": str(args.size),
        "MUSC_PIPELINE__MAX_AGE_MS": "0",
        "MUSC_OPCUA__ENABLED": "true",
        "MUSC_OPCUA__ENDPOINT": f"opc.tcp://127.0.0.1:{opcua_port}",
        "MUSC_MQTT__ENABLED": "true",
        "MUSC_MQTT__URL": f"mqtt://127.0.0.1:{mqtt_port}",
        "MUSC_CAMERA__SOURCE": "genicam://127.0.0.1",
        "MUSC_CAMERA__TRIGGER": "software",
        "MUSC_CAMERA__PIXEL_FORMAT": "Mono8",
    }
    processes: list[subprocess.Popen] = []
    try:
        processes.append(subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")]))
        processes.append(subprocess.Popen(["arv-fake-gv-camera-0.8", "-i", "127.0.0.1"], stderr=subprocess.DEVNULL))
        daemon = start_daemon(work / "lines", base_port, work / "daemon.log", settings)
        processes.append(daemon)
        control = ControlClient(TransportSettings.for_line(LINE, base_port))
        wait_ready(daemon, control, 300)
        _wait_port(mqtt_port, 30)
        _wait_port(opcua_port, 60)
        mqtt = MqttLog(mqtt_port)
        env = {**os.environ, **settings, "MUSC_TRANSPORT__BASE_PORT": str(base_port)}
        with open(work / "camera.log", "wb") as log:
            camera = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli.musc_online", "camera", "--line", str(LINE)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
            )
        processes.append(camera)
        deadline = time.monotonic() + 60
        while b"triggered by the PLC" not in (work / "camera.log").read_bytes():
            if time.monotonic() > deadline or camera.poll() is not None:
                raise SystemExit(f"the camera source did not reach the PLC handshake: {work / 'camera.log'}")
            time.sleep(0.05)
        time.sleep(1.0)  # and its first open of the camera (not logged) settles
        cpu_before = _cpu_s(camera.pid)
        plc_endpoint = f"opc.tcp://127.0.0.1:{opcua_port}"
        latencies, triggers, timeouts, elapsed_s = _plc_cycles(plc_endpoint, args.rate, args.seconds)
        cpu_s = _cpu_s(camera.pid) - cpu_before
        camera.send_signal(signal.SIGTERM)
        source = json.loads(camera.communicate(timeout=30)[0].decode().strip().splitlines()[-1])
        counts = control.call("status")["result"]["counts"]
        deadline = time.monotonic() + 30
        while len(mqtt.frames) < counts["decided"] and time.monotonic() < deadline:
            time.sleep(0.05)
        control.close()
        return {
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "triggers": triggers,
            "elapsed_s": elapsed_s,
            "achieved_per_s": triggers / elapsed_s,
            "result_timeouts": timeouts,
            "exposure_to_result_ready_ms": summary_ms(latencies),
            "decision_to_mqtt_ms": summary_ms(mqtt.delays),
            "frames_grabbed": source["grabbed"],
            "frames_sent": source["sent"],
            "frames_received": counts["received"],
            "frames_decided": counts["decided"],
            "frames_refused": counts["refused"],
            "mqtt_delivered": len(mqtt.frames),
            "camera_errors": source["errors"],
            "camera_cpu_ms_per_frame": 1e3 * cpu_s / max(1, source["sent"]),
            "backbone": args.backbone,
            "image_size": args.size,
            "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        }
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="PLC triggers per second")
    parser.add_argument("--seconds", type=float, default=120.0, help="--rate x --seconds triggers are sent")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=256, help="model input size in pixels")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        print(
            "run inside a network namespace with only lo (GigE discovery must not leave the machine):", file=sys.stderr
        )
        print("  unshare --net sh -c 'ip link set lo up && .venv/bin/python tools/bench_lineio.py'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-lineio-") as work:
        figures = bench(args, Path(work))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
