"""CURVE keys and the ZAP handler that admits each client key to the sockets its role may use.

Roles: a **camera** key may push frames and follow decisions; an **operator** key may do that and use the
control socket (status, pause, band, judges, shutdown). Each daemon socket has its own ZAP domain, so one
authenticator thread answers for all three with a different list of admitted keys. Sockets bound off loopback
without CURVE are refused (``check_server``): the control socket can shut a line down.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from musc_online.transport.settings import CurveServerKeys, TransportError, TransportSettings, is_loopback

CAMERA = "camera"
OPERATOR = "operator"
ADMITTED: Mapping[str, tuple[str, ...]] = {  # socket -> the client roles whose keys it admits
    "frames": (CAMERA, OPERATOR),
    "decisions": (CAMERA, OPERATOR),
    "control": (OPERATOR,),
}
ZAP_DOMAIN = "musc-online"  # each socket's domain is "musc-online.<socket>"
REFUSALS_LOGGED = 256  # distinct (socket, key) refusals logged; a flood of fresh keys cannot grow the log set

log = logging.getLogger(__name__)


def zap_domain(socket_name: str) -> str:
    """The ZAP domain a daemon socket (``frames``, ``decisions`` or ``control``) authenticates in."""
    return f"{ZAP_DOMAIN}.{socket_name}"


def generate_keys(folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Create a CURVE key pair ``<name>.key`` (public, to share) and ``<name>.key_secret`` (owner only, 0600)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(folder, name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def load_keys(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    """The public (and, with ``secret``, required secret) key of a key file; TransportError naming the file."""
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        raise TransportError(f"cannot read CURVE key file {path}: {err}") from err
    if secret and secret_key is None:
        raise TransportError(f"{path} holds no secret key; use the '.key_secret' file made by generate_keys")
    return public, secret_key


def _role_folders(curve: CurveServerKeys) -> dict[str, Path]:
    folders = {OPERATOR: curve.operator_clients_dir}
    if curve.camera_clients_dir is not None:
        folders[CAMERA] = curve.camera_clients_dir
    return folders


def check_server(settings: TransportSettings) -> None:
    """Refuse a daemon configuration that would let anyone in: TransportError saying what to set.

    Off loopback every socket needs CURVE keys; with keys, the daemon's secret must be readable and each
    clients' folder must exist. Cheap (no socket, no thread): the daemon calls it before it loads anything.
    """
    if settings.curve is None:
        if not is_loopback(settings.host):
            raise TransportError(
                f"refusing to bind the line's sockets to {settings.host} without CURVE keys: anyone who reaches that "
                "address could push frames and shut the line down over its control socket; set "
                "curve_server_secret and curve_operator_clients (and curve_camera_clients for cameras), or bind to "
                "127.0.0.1"
            )
        return
    load_keys(settings.curve.secret_file, secret=True)
    for role, folder in _role_folders(settings.curve).items():
        if not folder.is_dir():
            raise TransportError(f"CURVE {role} clients folder {folder} does not exist")


class _Admission:
    """ZAP credentials for every socket: a client key is admitted where its role may go (``ADMITTED``)."""

    def __init__(self, keys: Mapping[str, set[bytes]]) -> None:
        self.keys = keys  # role -> z85 public keys
        self.refused: set[tuple[str, bytes]] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by the authenticator thread for each handshake on ``domain`` with the client's z85 ``key``."""
        socket_name = domain.removeprefix(f"{ZAP_DOMAIN}.")
        roles = [role for role, keys in self.keys.items() if key in keys]
        if any(role in ADMITTED.get(socket_name, ()) for role in roles):
            return True
        if (socket_name, key) not in self.refused and len(self.refused) < REFUSALS_LOGGED:
            self.refused.add((socket_name, key))
            who = f"a {' and '.join(roles)} key" if roles else "an unknown key"
            log.warning("refused %s on the %s socket: %s", who, socket_name, key.decode(errors="replace"))
        return False


def start_authenticator(ctx: zmq.Context, settings: TransportSettings) -> ThreadAuthenticator | None:
    """Start the ZAP handler that admits each listed client key by role; None when CURVE is not configured.

    Call before binding. It reads the keys once: restart the daemon after adding or removing a client key.
    """
    check_server(settings)
    if settings.curve is None:
        return None
    keys: dict[str, set[bytes]] = {}
    for role, folder in _role_folders(settings.curve).items():
        try:
            keys[role] = set(zmq.auth.load_certificates(folder))
        except (OSError, ValueError) as err:
            raise TransportError(f"cannot read the CURVE {role} keys in {folder}: {err}") from err
        log.info("CURVE authentication: %d %s key(s) from %s", len(keys[role]), role, folder)
    if not keys[OPERATOR]:
        log.warning("no operator key in %s: nobody can use the control socket", settings.curve.operator_clients_dir)
    authenticator = ThreadAuthenticator(ctx)
    authenticator.start()
    admission = _Admission(keys)
    for socket_name in ADMITTED:
        authenticator.configure_curve_callback(domain=zap_domain(socket_name), credentials_provider=admission)
    return authenticator
