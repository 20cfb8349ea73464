"""Where a line's sockets live, what they may hold and which keys guard them: plain data, no ZeroMQ.

Also the stdlib helpers around addresses: a line's port block, a free block for tests, whether an address is
loopback (the only place sockets may be bound without CURVE) and whether anything listens on an endpoint.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 5550
PORTS_PER_LINE = 10  # frames at +0, decisions at +1, control at +2, the daemon's HTTP at +3; the rest kept
HTTP_PORT_OFFSET = 3
DEFAULT_HWM = 1000
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
SENDER_LINGER_MS = 5000


class TransportError(RuntimeError):
    """A socket cannot be set up as configured (missing keys, no authenticator, bad address, open off loopback)."""


@dataclass(frozen=True)
class CurveServerKeys:
    """The daemon's CURVE identity and the folders of client public keys (``*.key``) it admits, by role.

    Operators' keys are admitted on every socket, control included; cameras' keys on frames and decisions only
    (``ADMITTED`` in ``musc_online.transport.curve``). Any other key is refused at the handshake.
    """

    secret_file: Path  # the daemon's ``<name>.key_secret`` (holds its public key too)
    operator_clients_dir: Path  # operators' ``<name>.key`` files
    camera_clients_dir: Path | None = None  # cameras' ``<name>.key`` files; None: no camera keys


@dataclass(frozen=True)
class CurveClientKeys:
    """A client's CURVE identity and the daemon's public key it expects to talk to."""

    secret_file: Path  # the client's ``<name>.key_secret``
    server_public_file: Path  # the daemon's ``<name>.key`` (or its ``.key_secret``, which holds it too)


@dataclass(frozen=True)
class TransportSettings:
    """Where a line's sockets live and how much they may hold; ports 0 pick free ports when binding."""

    host: str = DEFAULT_HOST
    frames_port: int = DEFAULT_BASE_PORT
    decisions_port: int = DEFAULT_BASE_PORT + 1
    control_port: int = DEFAULT_BASE_PORT + 2
    hwm: int = DEFAULT_HWM  # messages queued per peer before a sender blocks (PUSH) or drops (PUB)
    frames_hwm: int | None = None  # the frames socket's own RCVHWM (a bound in bytes made a count); None: hwm
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # per received message part (ZMQ_MAXMSGSIZE)
    curve: CurveServerKeys | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("frames_port", "decisions_port", "control_port"):
            port = getattr(self, name)
            if not (isinstance(port, int) and 0 <= port <= 65535):
                raise ValueError(f"{name} must be an integer in [0, 65535], got {port!r}")
        if not (isinstance(self.hwm, int) and self.hwm >= 0):
            raise ValueError(f"hwm must be a non-negative integer (0 means no limit), got {self.hwm!r}")
        if self.frames_hwm is not None and not (isinstance(self.frames_hwm, int) and self.frames_hwm >= 0):
            raise ValueError(f"frames_hwm must be a non-negative integer (0 means no limit), got {self.frames_hwm!r}")
        if not (isinstance(self.max_message_bytes, int) and self.max_message_bytes > 0):
            raise ValueError(f"max_message_bytes must be a positive integer, got {self.max_message_bytes!r}")
        if not self.host:
            raise ValueError("host must not be empty")

    @classmethod
    def for_line(cls, line: int, base_port: int = DEFAULT_BASE_PORT, **kwargs: Any) -> TransportSettings:
        """The settings of line ``line``: the frames, decisions and control ports of its block (``line_ports``)."""
        frames, decisions, control, _ = line_ports(line, base_port)
        return cls(frames_port=frames, decisions_port=decisions, control_port=control, **kwargs)

    def endpoint(self, port: int) -> str:
        """The ``tcp://host:port`` endpoint (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{port}"

    @property
    def frames_endpoint(self) -> str:
        """Where cameras push frames to."""
        return self.endpoint(self.frames_port)

    @property
    def decisions_endpoint(self) -> str:
        """Where subscribers follow decisions on."""
        return self.endpoint(self.decisions_port)

    @property
    def control_endpoint(self) -> str:
        """Where operators send control requests to."""
        return self.endpoint(self.control_port)


def line_ports(line: int, base_port: int = DEFAULT_BASE_PORT) -> tuple[int, int, int, int]:
    """Line ``line``'s port block: frames, decisions, control and HTTP at ``base_port + 10 * line`` + 0, 1, 2, 3.

    ``base_port`` 0 lets the operating system choose free ports when binding (tests, throw-away lines): all 0.
    """
    if line < 0:
        raise ValueError(f"line must be a non-negative integer, got {line}")
    if base_port == 0:
        return 0, 0, 0, 0
    first = base_port + PORTS_PER_LINE * line
    if base_port < 1 or first + HTTP_PORT_OFFSET > 65535:
        raise ValueError(
            f"line {line} with base port {base_port} would use ports {first}..{first + HTTP_PORT_OFFSET}, "
            "outside 1..65535"
        )
    return first, first + 1, first + 2, first + HTTP_PORT_OFFSET


def free_port_block(line: int, host: str = DEFAULT_HOST, attempts: int = 50) -> int:
    """A base port whose whole block for ``line`` (``line_ports``) is free on ``host`` right now.

    For tests and tools that start throw-away lines; another process may still take a port before it is bound.
    """
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((host, 0))
            base = probe.getsockname()[1] - PORTS_PER_LINE * line
        try:
            ports = line_ports(line, base)
            for port in ports:
                with socket.socket() as taken:
                    taken.bind((host, port))
        except (OSError, ValueError):
            continue
        return base
    raise OSError(f"no free port block for line {line} on {host} after {attempts} attempts")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1, ``localhost``): reachable from this machine only.

    Any other name or address, ``0.0.0.0`` (every interface) included, counts as reachable from the network.
    """
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def accepts_connections(endpoint: str, timeout_s: float = 0.5) -> bool:
    """Whether anything listens on a ``tcp://host:port`` endpoint now: a cheap check before waiting on a reply,
    since a ZeroMQ request to a line that is down would only time out."""
    address = endpoint.removeprefix("tcp://")
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False
