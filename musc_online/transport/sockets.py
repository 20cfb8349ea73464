"""The ZeroMQ sockets themselves: the daemon's bound PULL, PUB and REP, the clients' PUSH, SUB and REQ, and
sending and receiving multipart messages with timeouts.

``max_message_bytes`` is enforced by libzmq (ZMQ_MAXMSGSIZE) on each received message part: a peer that
sends a larger part is disconnected and that message is lost without any answer, because the daemon never
sees it. The daemon therefore also applies its own, smaller image limit to what it does receive, and
``FrameSender`` refuses to send an oversize part in the first place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from musc_online.transport.curve import check_server, load_keys, start_authenticator, zap_domain
from musc_online.transport.settings import (
    DEFAULT_HWM,
    SENDER_LINGER_MS,
    CurveClientKeys,
    TransportError,
    TransportSettings,
)

Context = zmq.Context
Socket = zmq.Socket


def _bind(
    ctx: zmq.Context,
    settings: TransportSettings,
    kind: int,
    name: str,
    authenticator: ThreadAuthenticator | None,
    **options: Any,
) -> zmq.Socket:
    """Create daemon socket ``name`` (frames, decisions or control) of ``kind`` with ``options`` and, if
    configured, the CURVE server role in that socket's ZAP domain; bind it to its port.

    Every option is set before ``bind``: libzmq gives accepted connections the options the socket had then.
    """
    check_server(settings)
    sock = ctx.socket(kind)
    try:
        sock.linger = 0
        for option, value in options.items():
            setattr(sock, option, value)
        if ":" in settings.host:
            sock.ipv6 = True
        if settings.curve is not None:
            if authenticator is None or not authenticator.is_alive():
                raise TransportError(
                    "CURVE keys are configured but no ZAP authenticator runs, so any client key would be accepted: "
                    "call start_authenticator(ctx, settings) first"
                )
            public, secret = load_keys(settings.curve.secret_file, secret=True)
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            sock.curve_server = True
            sock.zap_domain = zap_domain(name).encode()
        endpoint = settings.endpoint(getattr(settings, f"{name}_port"))
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
    rcvhwm = settings.hwm if settings.frames_hwm is None else settings.frames_hwm
    return _bind(ctx, settings, zmq.PULL, "frames", authenticator, rcvhwm=rcvhwm, maxmsgsize=settings.max_message_bytes)


def bind_decisions(
    ctx: zmq.Context, settings: TransportSettings, authenticator: ThreadAuthenticator | None = None
) -> zmq.Socket:
    """The daemon's PUB socket for decisions and refusals; a subscriber slower than SNDHWM loses messages."""
    return _bind(ctx, settings, zmq.PUB, "decisions", authenticator, sndhwm=settings.hwm)


def bind_control(
    ctx: zmq.Context, settings: TransportSettings, authenticator: ThreadAuthenticator | None = None
) -> zmq.Socket:
    """The daemon's REP socket for control requests; every request received must get exactly one reply."""
    return _bind(ctx, settings, zmq.REP, "control", authenticator, maxmsgsize=settings.max_message_bytes)


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
    """Start the authenticator (with CURVE) and bind frames, decisions and control, or bind nothing.

    Refused with TransportError off loopback without CURVE keys (``check_server``).
    """
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
            public, secret = load_keys(keys.secret_file, secret=True)
            server_public, _ = load_keys(keys.server_public_file, secret=False)
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


def send_parts(sock: zmq.Socket, parts: list[bytes], timeout_ms: int | None = None) -> bool:
    """Send a multipart message; False when no room opened within ``timeout_ms`` (None: wait as long as it takes).

    With a timeout the send after the poll does not block: the room the poll saw can go between the two (a peer
    whose CURVE handshake is refused drops its pipe), and a blocking send would then wait forever.
    """
    try:
        if timeout_ms is not None and not sock.poll(timeout_ms, zmq.POLLOUT):
            return False
        sock.send_multipart(parts, flags=0 if timeout_ms is None else zmq.NOBLOCK, copy=False)
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
