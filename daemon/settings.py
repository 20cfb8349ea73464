"""The line daemon's own settings (folders, sockets, pipeline, store, pictures, HTTP), declared like the library's.

The library's classes (``ModelSettings``, ``MuscSettings``, ``OnlineSettings``, ``ThresholdSettings``) hold the
method's knobs; these hold what only a running line needs. Together they are the whole schema of a line's
configuration: ``daemon.config`` fills them from TOML files and ``MUSC_*`` variables, and
``config/default.toml`` is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from musc_online.online.settings import OnlineSettings
from musc_online.settings import SettingError, at_least, between, check_fields, knob, matches, one_of, positive
from musc_online.transport import CurveClientKeys, CurveServerKeys


@dataclass(frozen=True)
class PathsSettings:
    """Where the line's folder lives."""

    data_dir: Path = knob(
        Path("runs/lines"),
        "Per line the daemon uses <data_dir>/line-<N>/ holding store.db, state/ (judge bank, window) and artifacts/.",
    )
    export_dir: Path | None = knob(
        None,
        "A folder, besides the line's own <data_dir>/line-<N>/exports/, where `judges export` may write and `judges "
        "import` may read judge bank files (e.g. a share between lines); any other path is refused. Empty = none.",
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class LineTransportSettings:
    """The line's sockets: bind address, port block, queue and message limits, optional CURVE keys."""

    host: str = knob(
        "127.0.0.1",
        "Interface the sockets bind to; loopback by default. Bind elsewhere only with CURVE keys configured.",
    )
    base_port: int = knob(
        5550,
        "Line N uses base_port + 10*N + 0 (frames, PULL), 1 (decisions, PUB), 2 (control, REP), 3 (HTTP metrics and "
        "health); 0 = ports the system chooses (tests).",
        between(0, 65535),
    )
    hwm: int = knob(
        1000,
        "Messages queued per peer before a camera blocks (frames) or a slow subscriber loses decisions; 0 = no limit.",
        at_least(0),
    )
    max_message_bytes: int = knob(
        33554432, "Largest message part accepted (32 MiB); a peer sending more is disconnected by libzmq.", at_least(1)
    )
    curve_server_secret: Path | None = knob(
        None,
        "The daemon's CURVE secret key file (`<name>.key_secret`); empty = no CURVE, and then the line refuses to "
        "start on any host but loopback.",
    )
    curve_operator_clients: Path | None = knob(
        None,
        "Folder of operators' public keys (`*.key`), required with curve_server_secret: these may use every socket, "
        "control included (status, pause, band, judges, shutdown).",
    )
    curve_camera_clients: Path | None = knob(
        None,
        "Folder of cameras' public keys (`*.key`): these may push frames and follow decisions, never use control; "
        "empty = no camera keys. Any key in neither folder is refused.",
    )
    curve_allowed_clients: Path | None = knob(
        None,
        "Replaced by curve_operator_clients and curve_camera_clients (a camera's key must not control the line); a "
        "line with it set refuses to start and says so.",
    )
    curve_client_secret: Path | None = knob(
        None,
        "The key that musc-online's commands on this host (status, band, judges, publish, demo) present to the line: "
        "an operator's `<name>.key_secret`, its public key in the line's curve_operator_clients; empty = no key.",
    )
    curve_server_public: Path | None = knob(
        None,
        "The line's public key (`<name>.key`) those commands expect; empty = the one held in curve_server_secret "
        "(on the line's own host).",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.curve_allowed_clients is not None:
            raise SettingError(
                ("curve_allowed_clients",),
                "is no longer read: it gave every key the control socket. Put operators' public keys in "
                "curve_operator_clients (they may use control) and cameras' in curve_camera_clients (they may only "
                "push frames and follow decisions), then remove curve_allowed_clients",
            )
        if (self.curve_server_secret is None) != (self.curve_operator_clients is None):
            keys = ("curve_operator_clients", "curve_server_secret")
            raise SettingError(keys, "and curve_server_secret must be set together, or neither")
        if self.curve_camera_clients is not None and self.curve_server_secret is None:
            raise SettingError(("curve_camera_clients",), "needs curve_server_secret and curve_operator_clients")
        server_public = self.curve_server_public or self.curve_server_secret
        if self.curve_client_secret is not None and server_public is None:
            raise SettingError(("curve_client_secret",), "needs curve_server_public: the line's public key")

    def server_keys(self) -> CurveServerKeys | None:
        """The daemon's CURVE keys and client folders by role, or None without CURVE."""
        if self.curve_server_secret is None or self.curve_operator_clients is None:
            return None
        return CurveServerKeys(self.curve_server_secret, self.curve_operator_clients, self.curve_camera_clients)

    def client_keys(self) -> CurveClientKeys | None:
        """The identity this host's musc-online commands use towards the line, or None for none."""
        server_public = self.curve_server_public or self.curve_server_secret
        if self.curve_client_secret is None or server_public is None:
            return None
        return CurveClientKeys(self.curve_client_secret, server_public)


@dataclass(frozen=True)
class LineOnlineSettings(OnlineSettings):
    """The online scorer's knobs, plus the folder of good images seeded as judges at the first start."""

    judges_dir: Path | None = knob(None, "Folder of good images seeded as judges at the first start; empty = none.")


@dataclass(frozen=True)
class PipelineSettings:
    """The frame pipeline: bounds in frames and bytes, age budget and clock-skew guard, micro-batch, image cap."""

    queue_size: int = knob(
        64,
        "Frames waiting for the scorer; a frame that finds the queue full (this many frames, or queue_bytes) waits for "
        'room or is "overloaded".',
        at_least(1),
    )
    queue_bytes: int = knob(
        268435456,
        "Bytes of frames waiting for the scorer (256 MiB). A frame is kept from ingest on only as the model's input "
        "(model.image_size squared, resized as the model resizes it, so it scores exactly as the whole frame) and its "
        "picture (at most picture_side): a burst of large frames holds no more than this, however few they are.",
        at_least(1),
    )
    picture_side: int = knob(
        1024,
        "Longest side in pixels of the frame kept for its picture (defect and unsure frames, beside their heatmap); "
        "larger frames are shrunk at ingest, aspect kept.",
        at_least(16),
    )
    pictures_bytes: int = knob(
        67108864,
        "Bytes of frames waiting for the picture writer (64 MiB); when it lags beyond that, pictures are shed "
        "(musc_artifacts_shed_total), never frames.",
        at_least(1),
    )
    receive_bytes: int = knob(
        134217728,
        "Bytes of frames ZeroMQ may hold per connected camera before the camera blocks (128 MiB): the frames socket's "
        "high-water mark, which counts messages, is this divided by transport.max_message_bytes (at least 1, at most "
        "transport.hwm).",
        at_least(1),
    )
    max_age_ms: float = knob(
        2000.0,
        "Age budget in milliseconds, counted from the camera's timestamp: a frame that cannot be answered within it "
        'is refused as "late" (the answer says how late) instead of being scored stale; 0 = no budget.',
        at_least(0),
    )
    max_clock_skew_ms: float = knob(
        1000.0,
        "A camera timestamp more than this many milliseconds ahead of this host's clock is not trusted: that frame's "
        "age is counted from its arrival, and the camera is reported (musc_clock_skew_frames_total).",
        at_least(0),
    )
    micro_batch: int = knob(4, "Frames scored together on the device.", at_least(1))
    max_image_pixels: int = knob(
        50000000, "Largest decoded image accepted (height x width); larger frames are refused.", at_least(1)
    )
    snapshot_every_s: float = knob(
        300.0,
        "Seconds between saves of the judge bank, window and thresholds under the line's state/ folder.",
        positive,
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def frames_hwm(self, max_message_bytes: int, hwm: int) -> int:
        """The frames socket's high-water mark (messages per camera) that keeps what ZeroMQ holds within
        ``receive_bytes``: messages of up to ``max_message_bytes`` each, never more than ``hwm`` (0: no count limit)."""
        messages = max(1, self.receive_bytes // max_message_bytes)
        return min(messages, hwm) if hwm else messages


@dataclass(frozen=True)
class StoreSettings:
    """Where the line's records go."""

    url: str | None = knob(
        None,
        "SQLAlchemy URL; empty = sqlite:///<data_dir>/line-<N>/store.db (SQLite in WAL mode). Every row carries its "
        "line, so many lines can share one database, e.g. postgresql+psycopg://USER:PASSWORD@HOST/DB (needs the extra "
        "musc-online[postgres]).",
    )
    poll_s: float = knob(
        0.5,
        "Seconds between looks for corrections written into the store by anyone (the review station, a script).",
        positive,
    )
    report_every_s: float = knob(
        5.0,
        "Seconds between the line's status reports into the store (what the plant's review station shows).",
        positive,
    )
    keep_days: int = knob(
        90,
        "Days a line's frames and decisions (and the pictures they name) stay in the store; older ones are removed in "
        "small batches by the line, off the scoring path. Corrections and the frames they name, judges, events and "
        "the status counts are kept. 0 = keep every frame for ever (the store then grows by about 430,000 rows a day "
        "per line at 5 frames/s).",
        at_least(0),
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ArtifactsSettings:
    """Which frames are kept as pictures on disk, and for how long."""

    keep_ok_every: int = knob(
        50, "Keep 1 in N ok frames (defect and unsure frames are always kept); 0 = keep no ok frame.", at_least(0)
    )
    max_files: int = knob(
        5000, "Most pictures kept under the line's artifacts/ folder; the oldest go first.", at_least(1)
    )
    max_age_days: int = knob(30, "Pictures older than this are removed.", at_least(1))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class HttpSettings:
    """The line's health checks and metrics."""

    enabled: bool = knob(
        True, "Serve /healthz, /readyz and Prometheus /metrics on the line's HTTP port (base_port + 10*N + 3)."
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class MqttSettings:
    """Decisions and refusals published to an MQTT broker (a subscriber of the line: it never slows scoring)."""

    enabled: bool = knob(False, "Publish every decision and refusal as JSON on <topic_prefix>/line/<N>/decision.")
    url: str = knob(
        "mqtt://127.0.0.1:1883",
        "The broker: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS (checked against ca_file, or the system's CAs).",
        matches(r"mqtts?://[^/:]+(:\d+)?/?", "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"),
    )
    ca_file: Path | None = knob(None, "TLS: the CA certificate(s) the broker's certificate must chain to.")
    username: str | None = knob(None, "Broker login; empty = anonymous.")
    password_file: Path | None = knob(None, "A file holding the broker password (kept out of config files).")
    topic_prefix: str = knob("musc", "First level of every topic.", matches(r"[^#+/][^#+]*", "a topic without # or +"))
    qos: int = knob(
        1, "MQTT quality of service for decisions: 0 at most once, 1 at least once, 2 exactly once.", between(0, 2)
    )
    queue_size: int = knob(
        10_000,
        "Messages kept while the broker is away (the newest); beyond that the oldest are dropped and counted.",
        at_least(1),
    )
    keepalive_s: int = knob(
        10, "Seconds between keep-alive pings; the broker sends the last will after 1.5 x.", at_least(1)
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class OpcuaSettings:
    """An OPC UA server per line for the PLC: last result, counters, band, state, Trigger/Busy/ResultReady/Ack."""

    enabled: bool = knob(False, "Serve the line's results and the PLC handshake over OPC UA (docs/plc.md).")
    endpoint: str | None = knob(
        None,
        "opc.tcp://HOST:PORT to serve on; empty = opc.tcp://<transport.host>:<base_port + 10*N + 4>.",
        matches(r"opc\.tcp://[^/]+:\d+/?.*", "opc.tcp://HOST:PORT"),
    )
    security_policy: str = knob(
        "none",
        "none, or basic256sha256 (signed and encrypted; needs certificate and private_key).",
        one_of("none", "basic256sha256"),
    )
    certificate: Path | None = knob(None, "The server's certificate (DER or PEM) for basic256sha256.")
    private_key: Path | None = knob(None, "The server's private key (PEM) for basic256sha256.")
    users_file: Path | None = knob(
        None, "Lines of NAME:ARGON2-HASH allowed to log in (anonymous access is then refused); empty = anonymous."
    )
    result_timeout_s: float = knob(
        5.0, "After a Trigger, the longest wait for a decision; then ResultReady with Verdict 'timeout'.", positive
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.security_policy != "none" and not (self.certificate and self.private_key):
            raise SettingError(("security_policy", "certificate"), "basic256sha256 needs certificate and private_key")
