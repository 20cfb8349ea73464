"""ZeroMQ sockets of the line daemon and its clients: the only package that imports ``zmq``.

Daemon side: PULL for frames, PUB for decisions and refusals, REP for control, all bound to loopback by
default. Off loopback they need CURVE keys (the daemon refuses to start without them) and then admit only
listed client keys, by role: cameras may push frames and follow decisions, operators may also use control.
Client side: the matching PUSH, SUB and REQ sockets that ``musc_online.client`` wraps.

- ``settings``: addresses, ports and key locations (no ZeroMQ);
- ``curve``: key files, roles and the ZAP handler;
- ``sockets``: binding, connecting, sending and receiving.
"""

from musc_online.transport.curve import (
    ADMITTED,
    CAMERA,
    OPERATOR,
    ZAP_DOMAIN,
    check_server,
    generate_keys,
    start_authenticator,
    zap_domain,
)
from musc_online.transport.settings import (
    DEFAULT_BASE_PORT,
    DEFAULT_HOST,
    DEFAULT_HWM,
    DEFAULT_MAX_MESSAGE_BYTES,
    HTTP_PORT_OFFSET,
    PORTS_PER_LINE,
    SENDER_LINGER_MS,
    CurveClientKeys,
    CurveServerKeys,
    TransportError,
    TransportSettings,
    accepts_connections,
    free_port_block,
    is_loopback,
    line_ports,
)
from musc_online.transport.sockets import (
    Context,
    DaemonSockets,
    Socket,
    bind_control,
    bind_daemon,
    bind_decisions,
    bind_frames,
    bound_port,
    connect_control,
    connect_decisions,
    connect_frames,
    recv_parts,
    send_parts,
)

__all__ = [
    "ADMITTED",
    "CAMERA",
    "DEFAULT_BASE_PORT",
    "DEFAULT_HOST",
    "DEFAULT_HWM",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "HTTP_PORT_OFFSET",
    "OPERATOR",
    "PORTS_PER_LINE",
    "SENDER_LINGER_MS",
    "ZAP_DOMAIN",
    "Context",
    "CurveClientKeys",
    "CurveServerKeys",
    "DaemonSockets",
    "Socket",
    "TransportError",
    "TransportSettings",
    "accepts_connections",
    "bind_control",
    "bind_daemon",
    "bind_decisions",
    "bind_frames",
    "bound_port",
    "check_server",
    "connect_control",
    "connect_decisions",
    "connect_frames",
    "free_port_block",
    "generate_keys",
    "is_loopback",
    "line_ports",
    "recv_parts",
    "send_parts",
    "start_authenticator",
    "zap_domain",
]
