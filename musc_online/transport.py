"""ZeroMQ sockets of the line daemon and its clients: the only module that imports ``zmq``.

Daemon side: PULL for frames, PUB for decisions and refusals, REP for control, all bound to loopback by
default and, when CURVE keys are configured, open only to clients whose public keys are listed (ZAP).
Client side: the matching PUSH, SUB and REQ sockets that ``musc_online.client`` wraps.

``max_message_bytes`` is enforced by libzmq (ZMQ_MAXMSGSIZE) on each received message part: a peer that
sends a larger part is disconnected and that message is lost without any answer, because the daemon never
sees it. The daemon therefore also applies its own, smaller image limit to what it does receive, and
``FrameSender`` refuses to send an oversize part in the first place.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

Context = zmq.Context
Socket = zmq.Socket

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 5550
PORTS_PER_LINE = 10  # frames at +0, decisions at +1, control at +2, the daemon's HTTP at +3; the rest kept
HTTP_PORT_OFFSET = 3
DEFAULT_HWM = 1000
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
ZAP_DOMAIN = "musc-online"
SENDER_LINGER_MS = 5000

log = logging.getLogger(__name__)


class TransportError(RuntimeError):
    """A socket cannot be set up as configured (missing keys, no authenticator, bad address)."""


@dataclass(frozen=True)
class CurveServerKeys:
    """The daemon's CURVE identity and the folder of client public keys (``*.key``) it accepts."""

    secret_file: Path  # the daemon's ``<name>.key_secret`` (holds its public key too)
    allowed_clients_dir: Path  # clients' ``<name>.key`` files; any other client is refused


@dataclass(frozen=True)
class CurveClientKeys:
    """A client's CURVE identity and the daemon's public key it expects to talk to."""

    secret_file: Path  # the client's ``<name>.key_secret``
    server_public_file: Path  # the daemon's ``<name>.key``


@dataclass(frozen=True)
class TransportSettings:
    """Where a line's sockets live and how much they may hold; ports 0 pick free ports when binding."""

    host: str = DEFAULT_HOST
    frames_port: int = DEFAULT_BASE_PORT
    decisions_port: int = DEFAULT_BASE_PORT + 1
    control_port: int = DEFAULT_BASE_PORT + 2
    hwm: int = DEFAULT_HWM  # messages queued per peer before a sender blocks (PUSH) or drops (PUB)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # per received message part (ZMQ_MAXMSGSIZE)
    curve: CurveServerKeys | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("frames_port", "decisions_port", "control_port"):
            port = getattr(self, name)
            if not (isinstance(port, int) and 0 <= port <= 65535):
                raise ValueError(f"{name} must be an integer in [0, 65535], got {port!r}")
        if not (isinstance(self.hwm, int) and self.hwm >= 0):
            raise ValueError(f"hwm must be a non-negative integer (0 means no limit), got {self.hwm!r}")
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


def generate_keys(folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Create a CURVE key pair ``<name>.key`` (public, to share) and ``<name>.key_secret`` (owner only, 0600)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(folder, name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def _load_keys(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        raise TransportError(f"cannot read CURVE key file {path}: {err}") from err
    if secret and secret_key is None:
        raise TransportError(f"{path} holds no secret key; use the '.key_secret' file made by generate_keys")
    return public, secret_key


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def start_authenticator(ctx: zmq.Context, settings: TransportSettings) -> ThreadAuthenticator | None:
    """Start the ZAP handler that lets only the listed client keys in; None when CURVE is not configured.

    Call before binding. It reads the allowed keys once: restart it after adding or removing a client key.
    """
    if settings.curve is None:
        return None
    folder = settings.curve.allowed_clients_dir
    if not folder.is_dir():
        raise TransportError(f"CURVE allowed-clients folder {folder} does not exist")
    clients = sorted(folder.glob("*.key"))
    if not clients:
        log.warning("CURVE allowed-clients folder %s holds no *.key file: every client will be refused", folder)
    authenticator = ThreadAuthenticator(ctx)
    authenticator.start()
    # pyzmq's "*" is not a wildcard, only the name for an empty domain: name the domain our sockets set.
    authenticator.configure_curve(domain=ZAP_DOMAIN, location=str(folder))
    log.info("CURVE authentication on: %d allowed client key(s) from %s", len(clients), folder)
    return authenticator


def _bind(
    ctx: zmq.Context,
    settings: TransportSettings,
    kind: int,
    port: int,
    authenticator: ThreadAuthenticator | None,
    **options: Any,
) -> zmq.Socket:
    """Create a daemon socket of ``kind`` with ``options`` and, if configured, the CURVE server role; bind it.

    Every option is set before ``bind``: libzmq gives accepted connections the options the socket had then.
    """
    sock = ctx.socket(kind)
    try:
        sock.linger = 0
        for name, value in options.items():
            setattr(sock, name, value)
        if ":" in settings.host:
            sock.ipv6 = True
        if settings.curve is not None:
            if authenticator is None or not authenticator.is_alive():
                raise TransportError(
                    "CURVE keys are configured but no ZAP authenticator runs, so any client key would be accepted: "
                    "call start_authenticator(ctx, settings) first"
                )
            public, secret = _load_keys(settings.curve.secret_file, secret=True)
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            sock.curve_server = True
            sock.zap_domain = ZAP_DOMAIN.encode()
        elif not _is_loopback(settings.host):
            log.warning("binding to %s without CURVE keys: anyone on that network can connect", settings.host)
        endpoint = settings.endpoint(port)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as err:
            raise TransportError(f"cannot bind {endpoint}: {err}") from err
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def bind_frames(
    ctx: zmq.Context, settings: TransportSettings, authenticator: ThreadAuthenticator | None = None
) -> zmq.Socket:
    """The daemon's PULL socket for camera frames, with RCVHWM and MAXMSGSIZE (oversize peers are cut off)."""
    return _bind(
        ctx,
        settings,
        zmq.PULL,
        settings.frames_port,
        authenticator,
        rcvhwm=settings.hwm,
        maxmsgsize=settings.max_message_bytes,
    )


def bind_decisions(
    ctx: zmq.Context, settings: TransportSettings, authenticator: ThreadAuthenticator | None = None
) -> zmq.Socket:
    """The daemon's PUB socket for decisions and refusals; a subscriber slower than SNDHWM loses messages."""
    return _bind(ctx, settings, zmq.PUB, settings.decisions_port, authenticator, sndhwm=settings.hwm)


def bind_control(
    ctx: zmq.Context, settings: TransportSettings, authenticator: ThreadAuthenticator | None = None
) -> zmq.Socket:
    """The daemon's REP socket for control requests; every request received must get exactly one reply."""
    return _bind(ctx, settings, zmq.REP, settings.control_port, authenticator, maxmsgsize=settings.max_message_bytes)


def bound_port(sock: zmq.Socket) -> int:
    """The TCP port a socket is bound to (the one the OS picked when bound to port 0)."""
    return int(sock.last_endpoint.decode().rsplit(":", 1)[1])


@dataclass
class DaemonSockets:
    """The daemon's three bound sockets, the ZAP authenticator guarding them, and the ports actually bound."""

    frames: zmq.Socket
    decisions: zmq.Socket
    control: zmq.Socket
    authenticator: ThreadAuthenticator | None
    settings: TransportSettings  # with the real ports, for clients when the configuration asked for port 0

    def close(self, linger_ms: int = 1000) -> None:
        """Close the sockets, giving queued decisions and replies ``linger_ms`` to leave, and stop the authenticator."""
        for sock in (self.frames, self.decisions, self.control):
            sock.close(linger=linger_ms)
        if self.authenticator is not None:
            self.authenticator.stop()


def bind_daemon(ctx: zmq.Context, settings: TransportSettings) -> DaemonSockets:
    """Start the authenticator (with CURVE) and bind frames, decisions and control, or bind nothing."""
    authenticator = start_authenticator(ctx, settings)
    bound: list[zmq.Socket] = []
    try:
        for bind in (bind_frames, bind_decisions, bind_control):
            bound.append(bind(ctx, settings, authenticator))
    except BaseException:
        for sock in bound:
            sock.close(linger=0)
        if authenticator is not None:
            authenticator.stop()
        raise
    frames, decisions, control = bound
    actual = replace(
        settings,
        frames_port=bound_port(frames),
        decisions_port=bound_port(decisions),
        control_port=bound_port(control),
    )
    return DaemonSockets(frames, decisions, control, authenticator, actual)


def _connect(
    kind: int, endpoint: str, keys: CurveClientKeys | None, ctx: zmq.Context | None, **options: Any
) -> zmq.Socket:
    """Create a client socket of ``kind`` with ``options`` (and CURVE client keys if given) and connect it."""
    sock = (ctx or zmq.Context.instance()).socket(kind)
    try:
        for name, value in options.items():
            setattr(sock, name, value)
        if "[" in endpoint:
            sock.ipv6 = True
        if keys is not None:
            public, secret = _load_keys(keys.secret_file, secret=True)
            server_public, _ = _load_keys(keys.server_public_file, secret=False)
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            sock.curve_serverkey = server_public
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as err:
            raise TransportError(f"cannot connect to {endpoint}: {err}") from err
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def connect_frames(
    endpoint: str, *, hwm: int = DEFAULT_HWM, keys: CurveClientKeys | None = None, ctx: zmq.Context | None = None
) -> zmq.Socket:
    """A camera's PUSH socket; ``send`` blocks once ``hwm`` frames wait (backpressure, never a drop).

    Closing it waits up to SENDER_LINGER_MS for queued frames, so a daemon that is gone cannot hang the exit.
    """
    return _connect(zmq.PUSH, endpoint, keys, ctx, sndhwm=hwm, linger=SENDER_LINGER_MS)


def connect_decisions(
    endpoint: str, topic: bytes, *, keys: CurveClientKeys | None = None, ctx: zmq.Context | None = None
) -> zmq.Socket:
    """A SUB socket receiving the messages whose topic starts with ``topic``."""
    sock = _connect(zmq.SUB, endpoint, keys, ctx, linger=0)
    sock.subscribe(topic)
    return sock


def connect_control(
    endpoint: str, *, keys: CurveClientKeys | None = None, ctx: zmq.Context | None = None
) -> zmq.Socket:
    """A REQ socket for control calls; one that missed a reply cannot send again: close it and connect anew."""
    return _connect(zmq.REQ, endpoint, keys, ctx, linger=0)


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


def send_parts(sock: zmq.Socket, parts: list[bytes], timeout_ms: int | None = None) -> bool:
    """Send a multipart message; False when no room opened within ``timeout_ms`` (None: wait as long as it takes)."""
    try:
        if timeout_ms is not None and not sock.poll(timeout_ms, zmq.POLLOUT):
            return False
        sock.send_multipart(parts, copy=False)
    except zmq.Again:  # the socket's own SNDTIMEO ran out
        return False
    return True


def recv_parts(sock: zmq.Socket, timeout_ms: int | None = None) -> list[bytes] | None:
    """Receive one multipart message, or None when none arrives within ``timeout_ms`` (None: wait forever)."""
    try:
        if timeout_ms is not None and not sock.poll(timeout_ms, zmq.POLLIN):
            return None
        return sock.recv_multipart()
    except zmq.Again:  # the socket's own RCVTIMEO ran out
        return None
