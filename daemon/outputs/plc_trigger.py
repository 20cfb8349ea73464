"""The camera's side of the PLC handshake: a software-triggered camera source captures when the line's OPC UA
server raises ``Busy`` (the PLC's ``Trigger`` taken), under the part id the PLC wrote in ``TriggerPartId``."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from daemon.outputs.opcua import NAMESPACE

log = logging.getLogger("musc.outputs.trigger")

RETRY_S = 1.0  # between attempts to reach the line's OPC UA server
WATCH_PERIOD_MS = 5  # the subscription's sampling and publishing interval


class PlcTrigger:
    """Calls ``on_trigger(part_id)`` ('' when the PLC named none) each time line ``line``'s ``Busy`` rises."""

    def __init__(self, endpoint: str, line: int, on_trigger: Callable[[str], None]) -> None:
        self.endpoint = endpoint
        self.line = line
        self.on_trigger = on_trigger
        self.triggers = 0
        self._busy = False
        self._rises: queue.Queue[bool] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plc-trigger", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def datachange_notification(self, node: Any, busy: bool, data: Any) -> None:
        """asyncua's subscription callback (on its own loop, where nothing may wait on the server): ``Busy``."""
        if busy and not self._busy:
            self._rises.put(True)
        self._busy = busy

    def _run(self) -> None:
        from asyncua import sync

        while not self._stop.is_set():
            client = sync.Client(self.endpoint)
            try:
                client.connect()
                index = client.get_namespace_index(NAMESPACE)
                handshake = client.nodes.objects.get_child([f"{index}:Line{self.line}", f"{index}:Handshake"])
                part = handshake.get_child(f"{index}:TriggerPartId")
                self._busy = False
                client.create_subscription(WATCH_PERIOD_MS, self).subscribe_data_change(
                    handshake.get_child(f"{index}:Busy")
                )
                log.info("camera triggered by the PLC through %s", self.endpoint)
                while not self._stop.is_set():
                    try:
                        self._rises.get(timeout=RETRY_S)
                    except queue.Empty:
                        client.check_connection()
                        continue
                    self.triggers += 1
                    self.on_trigger(part.read_value())
            except Exception as error:  # not up yet, or gone: connect again
                log.warning("no OPC UA server at %s (%s); trying again", self.endpoint, error)
                self._stop.wait(RETRY_S)
            finally:
                with contextlib.suppress(Exception):  # its thread is stopped even when the session is gone
                    client.disconnect()
