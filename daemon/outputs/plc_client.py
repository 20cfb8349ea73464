"""A PLC's side of a line's OPC UA server, for people and scripts: read every node, run one handshake."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from daemon.outputs.opcua import NAMESPACE, NODES

POLL_S = 0.005


class PlcClient:
    """Connected to line ``line``'s OPC UA server at ``endpoint`` (waiting up to ``timeout_s`` for it to start)."""

    def __init__(self, endpoint: str, line: int, timeout_s: float = 30.0) -> None:
        from asyncua import sync, ua

        self._ua = ua
        deadline = time.monotonic() + timeout_s
        while True:
            self.client = sync.Client(endpoint)
            try:
                self.client.connect()
                break
            except (OSError, TimeoutError) as error:
                self.client.tloop.stop()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no OPC UA server at {endpoint} within {timeout_s:g} s: {error}") from None
                time.sleep(0.2)
        index = self.client.get_namespace_index(NAMESPACE)
        root = self.client.nodes.objects.get_child(f"{index}:Line{line}")
        self.nodes = {
            name: root.get_child([f"{index}:{folder}", f"{index}:{name}"] if folder else f"{index}:{name}")
            for folder, name, *_ in NODES
        }
        self._types = {name: getattr(ua.VariantType, kind) for _, name, kind, *_ in NODES}

    def __getitem__(self, name: str) -> Any:
        return self.nodes[name].read_value()

    def __setitem__(self, name: str, value: Any) -> None:
        self.nodes[name].write_value(self._ua.Variant(value, self._types[name]))

    def wait(self, name: str, value: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self[name] != value:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not become {value} within {timeout_s:g} s")
            time.sleep(POLL_S)

    def handshake(self, part: str, timeout_s: float) -> None:
        """Trigger (naming ``part`` unless empty), wait for ResultReady, Ack, wait until it is cleared."""
        self["TriggerPartId"] = part
        self["Trigger"] = True
        self.wait("ResultReady", True, timeout_s)

    def acknowledge(self, timeout_s: float) -> None:
        self["Ack"] = True
        self.wait("ResultReady", False, timeout_s)

    def values(self) -> dict[str, Any]:
        """Every node's value, datetimes as ISO text."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in ((name, self[name]) for name in self.nodes)
        }

    def close(self) -> None:
        self.client.disconnect()
