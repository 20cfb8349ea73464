"""Decisions and refusals to an MQTT broker (paho-mqtt), as JSON on ``PREFIX/line/N/decision``.

A retained ``PREFIX/line/N/status`` says ``online`` once connected, ``stopped`` after a clean stop, and the
broker itself says ``offline`` (the last will) when the line vanishes. Messages wait in a bounded queue while the
broker is away and go out, oldest first, when it returns; one message at a time is handed to paho, so paho's
own unbounded buffer never holds more than that one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from daemon.outputs.metrics import OutputMetrics
from daemon.outputs.queue import OutgoingQueue
from daemon.settings import MqttSettings

log = logging.getLogger("musc.outputs.mqtt")

RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 5.0
FLUSH_ON_STOP_S = 2.0  # a clean stop gives queued messages this long to go out


class MqttOutput:
    """One line's MQTT publisher: a paho network thread and a sender thread fed by ``queue``."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, line: int, metrics: OutputMetrics) -> None:
        try:
            from paho.mqtt import client as mqtt
        except ImportError:
            raise ValueError("[mqtt] enabled needs paho-mqtt: pip install 'musc-online[line]'") from None

        self._mqtt = mqtt
        self.settings = settings
        self.line = line
        self.metrics = metrics
        self.topic = f"{settings.topic_prefix.rstrip('/')}/line/{line}/decision"
        self.status_topic = f"{settings.topic_prefix.rstrip('/')}/line/{line}/status"
        self.queue = OutgoingQueue(settings.queue_size, metrics.dropped.inc)
        self.sent = 0
        self.last_error = ""
        self._connected = threading.Event()
        self._stopping = threading.Event()
        url = urlsplit(settings.url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"musc-line-{line}", clean_session=True)
        client.will_set(self.status_topic, self._state("offline"), qos=1, retain=True)
        if settings.username:
            password = settings.password_file.read_text().strip() if settings.password_file else None
            client.username_pw_set(settings.username, password)
        if url.scheme == "mqtts":
            client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        self._thread = threading.Thread(target=self._run, name="output-mqtt", daemon=True)
        metrics.watch(lambda: len(self.queue), self._connected.is_set)

    def _state(self, state: str) -> str:
        return json.dumps({"line": self.line, "state": state, "at": time.time()})

    def start(self, readiness: Any = None) -> None:
        """Connect in the background (paho retries with backoff) and start sending."""
        self._client.connect_async(self._host, self._port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()
        self._thread.start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.warning("MQTT broker %s refused line %d: %s", self.settings.url, self.line, reason)
            return
        client.publish(self.status_topic, self._state("online"), qos=1, retain=True)
        self._connected.set()
        self.last_error = ""
        log.info("MQTT output of line %d connected to %s", self.line, self.settings.url)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.last_error = f"cannot reach the broker at {self.settings.url}"

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stopping.is_set():  # else the refusal's own reason stays
            self.last_error = f"disconnected from {self.settings.url}: {reason}"
            queued = len(self.queue)
            log.warning("MQTT output of line %d lost %s (%s); %d queued", self.line, self.settings.url, reason, queued)

    def offer(self, message: dict[str, Any]) -> None:
        """Queue one decision or refusal; never blocks."""
        self.queue.offer(message)

    def _run(self) -> None:
        """The sender thread: the oldest queued message to paho, then the next once paho has delivered it."""
        while not self._stopping.is_set() or (self._connected.is_set() and len(self.queue)):
            message = self.queue.peek(0.2)
            if message is None or not self._connected.wait(0.2):
                continue
            if self._deliver(json.dumps(message)):
                self.queue.done(message)
                self.sent += 1
                self.metrics.sent.inc()

    def _deliver(self, payload: str) -> bool:
        """Hand one message to paho and wait until it is delivered (paho resends QoS 1 and 2 after a reconnect)."""
        qos = self.settings.qos
        info = self._client.publish(self.topic, payload, qos=qos)
        while not info.is_published():
            if qos == 0 and info.rc != self._mqtt.MQTT_ERR_SUCCESS:
                return False  # QoS 0 is not kept by paho: offer it again once connected
            if self._stopping.is_set() and not self._connected.is_set():
                return False
            try:
                info.wait_for_publish(0.5)
            except RuntimeError:  # queued while disconnected: paho sends it on reconnect
                self._connected.wait(0.5)
        return True

    def stop(self) -> None:
        """Give queued messages ``FLUSH_ON_STOP_S`` to go out, say ``stopped`` and disconnect cleanly."""
        deadline = time.monotonic() + FLUSH_ON_STOP_S
        while len(self.queue) and self._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stopping.set()
        self.queue.close()
        self._thread.join(timeout=FLUSH_ON_STOP_S)
        if self._connected.is_set():
            self._client.publish(self.status_topic, self._state("stopped"), qos=1, retain=True).wait_for_publish(1)
        self._client.disconnect()
        self._client.loop_stop()

    def status(self) -> dict[str, Any]:
        """Connected or not, why not, and what was queued, sent and dropped."""
        return {
            "broker": self.settings.url,
            "topic": self.topic,
            "connected": self._connected.is_set(),
            "queued": len(self.queue),
            "queue_size": self.settings.queue_size,
            "sent": self.sent,
            "dropped": self.queue.dropped,
            "last_error": self.last_error,
        }
