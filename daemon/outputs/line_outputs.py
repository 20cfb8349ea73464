"""A line's outputs together: built from its settings, fed from the publisher thread, started and stopped with
the line, and reported in ``status``, ``/readyz`` and the metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from daemon.config import DaemonConfig
from daemon.outputs.metrics import OutputFamilies
from musc_online.messages import parse_decision_message
from musc_online.protocol import ProtocolError

log = logging.getLogger("musc.outputs")


OPCUA_PORT_OFFSET = 4  # line N's OPC UA port by default: base_port + 10*N + 4, beside its frames, PUB, REP and HTTP
Readiness = Callable[[], tuple[bool, str]]


def opcua_endpoint(config: DaemonConfig) -> str:
    """Where line N's OPC UA server listens: ``opcua.endpoint``, else the port beside its four."""
    port = config.transport.base_port + 10 * config.line + OPCUA_PORT_OFFSET
    return config.opcua.endpoint or f"opc.tcp://{config.transport.host}:{port}"


class Output(Protocol):
    name: str

    def offer(self, message: dict[str, Any]) -> None: ...
    def start(self, readiness: Readiness) -> None: ...
    def stop(self) -> None: ...
    def status(self) -> dict[str, Any]: ...


class LineOutputs:
    """The outputs ``config`` enables; ``offer`` hands each of them a copy of a published message, never waiting."""

    def __init__(self, config: DaemonConfig, registry: CollectorRegistry) -> None:
        self.outputs: list[Output] = []
        families = OutputFamilies(registry, config.line)
        if config.mqtt.enabled:
            from daemon.outputs.mqtt import MqttOutput

            self.outputs.append(MqttOutput(config.mqtt, config.line, families.of("mqtt")))
        if config.opcua.enabled:
            from daemon.outputs.opcua import OpcuaOutput

            self.outputs.append(OpcuaOutput(config.opcua, config.line, opcua_endpoint(config), families.of("opcua")))

    def offer(self, parts: Sequence[bytes]) -> None:
        """One message the line published (topic, JSON) to every output, as ``{"kind": ..., **payload}``."""
        if not self.outputs:
            return
        try:
            topic, payload = parse_decision_message(parts)
        except ProtocolError:
            log.exception("a published message the outputs cannot read")
            return
        message = {"kind": topic.rpartition(".")[2], "decided_at": time.time(), **payload}
        for output in self.outputs:
            output.offer(message)

    def start(self, readiness: Readiness) -> None:
        """Start every output; ``readiness`` is the line's own (the OPC UA server shows it as ``State``)."""
        for output in self.outputs:
            output.start(readiness)

    def stop(self) -> None:
        for output in self.outputs:
            output.stop()

    def status(self) -> dict[str, dict[str, Any]]:
        return {output.name: output.status() for output in self.outputs}

    def problems(self) -> list[str]:
        """What ``/readyz`` says about outputs that are not connected (the line stays ready: they catch up)."""
        return [
            f"{name} not connected ({state['last_error'] or 'connecting'}), {state['queued']} queued"
            for name, state in self.status().items()
            if not state["connected"]
        ]
