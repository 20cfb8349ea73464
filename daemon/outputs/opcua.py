"""An OPC UA server per line (asyncua) for the PLC: the last result, counters, band and state, and the
Trigger / Busy / ResultReady / Ack handshake (node names and timing: ``docs/plc.md``).

The server runs its own asyncio loop in its own thread. Decisions reach it through a bounded queue and the loop
looks at the handshake's inputs every ``POLL_S``: the line never waits for it, nor for the PLC.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.outputs.metrics import OutputMetrics
from daemon.outputs.queue import OutgoingQueue
from daemon.settings import OpcuaSettings

log = logging.getLogger("musc.outputs.opcua")

NAMESPACE = "urn:musc-online:line"
POLL_S = 0.005  # how often the handshake's inputs are looked at: a PLC's cycle is 10 ms or more
QUEUE_SIZE = 1000  # decisions waiting for the server's loop (it takes them every POLL_S)
Readiness = Callable[[], tuple[bool, str]]


class OpcuaOutput:
    """The line's OPC UA server; ``offer`` hands it a decision or refusal, never waiting."""

    name = "opcua"

    def __init__(self, settings: OpcuaSettings, line: int, endpoint: str, metrics: OutputMetrics) -> None:
        if importlib.util.find_spec("asyncua") is None:  # checked here: a missing package stops the start clearly
            raise ValueError("[opcua] enabled needs asyncua: pip install 'musc-online[line]'")
        self.settings = settings
        self.line = line
        self.endpoint = endpoint
        self.metrics = metrics
        self.queue = OutgoingQueue(QUEUE_SIZE, metrics.dropped.inc)
        self.last_error = ""
        self.handshakes = 0
        self._serving = threading.Event()
        self._stopping = threading.Event()
        self._readiness: Readiness = lambda: (True, "ready")
        self._thread = threading.Thread(target=self._run, name="output-opcua", daemon=True)
        metrics.watch(lambda: len(self.queue), self._serving.is_set)

    def offer(self, message: dict[str, Any]) -> None:
        self.queue.offer(message)

    def start(self, readiness: Readiness) -> None:
        self._readiness = readiness
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.queue.close()
        self._thread.join(timeout=10)

    def status(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "connected": self._serving.is_set(),
            "queued": len(self.queue),
            "handshakes": self.handshakes,
            "dropped": self.queue.dropped,
            "last_error": self.last_error,
        }

    def _run(self) -> None:
        logging.getLogger("asyncua").setLevel(logging.WARNING)  # it logs every node of the address space at INFO
        try:
            asyncio.run(self._serve())
        except Exception as error:  # a port in use, a bad certificate: reported, the line goes on
            self.last_error = f"OPC UA server on {self.endpoint} failed: {error}"
            log.exception("OPC UA server of line %d failed", self.line)
        finally:
            self._serving.clear()

    async def _serve(self) -> None:
        server = await _server(self.settings, self.line, self.endpoint)
        index = await server.register_namespace(NAMESPACE)
        nodes = await LineNodes.create(server.nodes.objects, index, self.line)
        handshake = Handshake(nodes, self.settings.result_timeout_s)
        async with server:
            self._serving.set()
            log.info("line %d serves OPC UA on %s", self.line, self.endpoint)
            while not self._stopping.is_set():
                while (message := self.queue.peek(0)) is not None:
                    await nodes.show(message)
                    self.handshakes += await handshake.decided(message)
                    self.queue.done(message)
                    self.metrics.sent.inc()
                await nodes.set("State", self._readiness()[1].split("; ")[0])
                self.handshakes += await handshake.step()
                await asyncio.sleep(POLL_S)
            await nodes.set("State", "stopped")


async def _server(settings: OpcuaSettings, line: int, endpoint: str) -> Any:
    from asyncua import Server, ua

    server = Server(user_manager=_Accounts(settings.users_file) if settings.users_file else None)
    await server.init()
    server.set_endpoint(endpoint)
    server.set_server_name(f"musc-online line {line}")
    if settings.security_policy == "basic256sha256":
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        await server.load_certificate(str(settings.certificate))
        await server.load_private_key(str(settings.private_key))
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if settings.users_file:
        server.set_identity_tokens([ua.UserNameIdentityToken])  # no anonymous sessions
    return server


class _Accounts:
    """OPC UA logins from a file of NAME:ARGON2-HASH lines (argon2-cffi's ``PasswordHasher().hash``)."""

    def __init__(self, path: Path) -> None:
        from argon2 import PasswordHasher

        self._hasher = PasswordHasher()
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        self._hashes = dict(line.split(":", 1) for line in lines)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None):
        from argon2.exceptions import VerificationError
        from asyncua.server.user_managers import User, UserRole

        stored = self._hashes.get(username or "")
        if stored is None or password is None:
            return None
        try:
            self._hasher.verify(stored, password)
        except VerificationError:
            return None
        return User(role=UserRole.User, name=username)


# Every node under Objects/Line<N>: (folder, name, OPC UA type, initial value, writable by the PLC).
NODES: list[tuple[str, str, str, Any, bool]] = [
    ("", "State", "String", "starting", False),
    ("LastResult", "PartId", "String", "", False),
    ("LastResult", "Camera", "String", "", False),
    ("LastResult", "Verdict", "String", "", False),
    ("LastResult", "Score", "Double", 0.0, False),
    ("LastResult", "DefectName", "String", "", False),
    ("LastResult", "Provisional", "Boolean", False, False),
    ("LastResult", "CameraTimestamp", "DateTime", datetime.fromtimestamp(0, UTC), False),
    ("LastResult", "DecisionTimestamp", "DateTime", datetime.fromtimestamp(0, UTC), False),
    ("Counters", "Decided", "UInt64", 0, False),
    ("Counters", "Ok", "UInt64", 0, False),
    ("Counters", "Unsure", "UInt64", 0, False),
    ("Counters", "Defect", "UInt64", 0, False),
    ("Counters", "Refused", "UInt64", 0, False),
    ("Band", "Low", "Double", 0.0, False),
    ("Band", "High", "Double", 0.0, False),
    ("Handshake", "Trigger", "Boolean", False, True),
    ("Handshake", "TriggerPartId", "String", "", True),
    ("Handshake", "Busy", "Boolean", False, False),
    ("Handshake", "ResultReady", "Boolean", False, False),
    ("Handshake", "Ack", "Boolean", False, True),
]


class LineNodes:
    """The line's nodes by name, written with their declared types."""

    def __init__(self, nodes: dict[str, tuple[Any, Any]]) -> None:
        self._nodes = nodes  # name -> (node, variant type)

    @classmethod
    async def create(cls, objects: Any, index: int, line: int) -> LineNodes:
        from asyncua import ua

        root = await objects.add_object(index, f"Line{line}")
        folders: dict[str, Any] = {"": root}
        nodes = {}
        for folder, name, kind, value, writable in NODES:
            if folder not in folders:
                folders[folder] = await root.add_object(index, folder)
            variant = getattr(ua.VariantType, kind)
            node = await folders[folder].add_variable(index, name, ua.Variant(value, variant))
            if writable:
                await node.set_writable()
            nodes[name] = (node, variant)
        return cls(nodes)

    async def get(self, name: str) -> Any:
        return await self._nodes[name][0].read_value()

    async def set(self, name: str, value: Any) -> None:
        from asyncua import ua

        node, variant = self._nodes[name]
        await node.write_value(ua.DataValue(ua.Variant(value, variant)))

    async def show(self, message: dict[str, Any]) -> None:
        """A decision or refusal as the last result; counters and band follow."""
        verdict = message.get("label", "refused") if message["kind"] == "decision" else "refused"
        nearest = message.get("nearest_defect") or {}
        camera_at = message.get("timestamp") or message.get("received_at") or time.time()
        await self.set("PartId", str(message.get("frame_id", "")))
        await self.set("Camera", str(message.get("camera", "")))
        await self.set("Verdict", verdict)
        await self.set("Score", float(message.get("score") or 0.0))
        await self.set("DefectName", str(nearest.get("label", "")) if verdict == "defect" else "")
        await self.set("Provisional", bool(message.get("provisional", False)))
        await self.set("CameraTimestamp", datetime.fromtimestamp(camera_at, UTC))
        await self.set("DecisionTimestamp", datetime.fromtimestamp(message["decided_at"], UTC))
        counter = {"ok": "Ok", "unsure": "Unsure", "defect": "Defect", "refused": "Refused"}[verdict]
        await self.set(counter, await self.get(counter) + 1)
        if verdict != "refused":
            await self.set("Decided", await self.get("Decided") + 1)
            low, high = message.get("band") or (None, None)
            if low is not None:
                await self.set("Low", float(low))
                await self.set("High", float(high))


class Handshake:
    """Trigger -> Busy -> ResultReady -> Ack, driven by the PLC's writes and the line's decisions.

    The PLC sets ``Trigger`` (and may name the part in ``TriggerPartId``); the line clears ``Trigger`` and sets
    ``Busy``. The first decision or refusal of a frame exposed after the trigger (or of the named part) becomes
    the last result: ``Busy`` falls and ``ResultReady`` rises. The PLC reads the result and sets ``Ack``; the line
    clears ``ResultReady`` and ``Ack``, ready for the next trigger. With no answer within ``timeout_s`` the verdict
    is ``timeout``.
    """

    def __init__(self, nodes: LineNodes, timeout_s: float) -> None:
        self.nodes = nodes
        self.timeout_s = timeout_s
        self._triggered_at: float | None = None  # wall clock of the trigger, while Busy
        self._part = ""

    async def step(self) -> int:
        """Look at Trigger and Ack; returns 1 when a handshake timed out here."""
        nodes = self.nodes
        if self._triggered_at is None and await nodes.get("Trigger") and not await nodes.get("ResultReady"):
            self._triggered_at, self._part = time.time(), await nodes.get("TriggerPartId")
            await nodes.set("Busy", True)
            await nodes.set("Trigger", False)
        elif self._triggered_at is not None and time.time() - self._triggered_at > self.timeout_s:
            await nodes.set("PartId", self._part)
            await nodes.set("Verdict", "timeout")
            await self._ready()
            return 1
        if await nodes.get("Ack") and await nodes.get("ResultReady"):
            await nodes.set("ResultReady", False)
            await nodes.set("Ack", False)
        return 0

    async def decided(self, message: dict[str, Any]) -> int:
        """After ``LineNodes.show``: 1 when this answer completes the pending trigger."""
        if self._triggered_at is None:
            return 0
        if self._part:
            answers = message.get("frame_id") == self._part
        else:
            exposed = message.get("timestamp") or message.get("received_at") or 0.0
            answers = exposed >= self._triggered_at
        if not answers:
            return 0
        await self._ready()
        return 1

    async def _ready(self) -> None:
        self._triggered_at, self._part = None, ""
        await self.nodes.set("Busy", False)
        await self.nodes.set("ResultReady", True)
