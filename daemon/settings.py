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
from musc_online.settings import SettingError, at_least, between, check_fields, knob, positive


@dataclass(frozen=True)
class PathsSettings:
    """Where the line's folder lives."""

    data_dir: Path = knob(
        Path("runs/lines"),
        "Per line the daemon uses <data_dir>/line-<N>/ holding store.db, state/ (judge bank, window) and artifacts/.",
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
        None, "Path to the daemon's CURVE secret key file (`<name>.key_secret`); empty = no CURVE authentication."
    )
    curve_allowed_clients: Path | None = knob(
        None,
        "Folder of the allowed clients' public keys (`*.key`); required with curve_server_secret, any other key is "
        "refused.",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if (self.curve_server_secret is None) != (self.curve_allowed_clients is None):
            keys = ("curve_allowed_clients", "curve_server_secret")
            raise SettingError(keys, "and curve_server_secret must be set together, or neither")


@dataclass(frozen=True)
class LineOnlineSettings(OnlineSettings):
    """The online scorer's knobs, plus the folder of good images seeded as judges at the first start."""

    judges_dir: Path | None = knob(None, "Folder of good images seeded as judges at the first start; empty = none.")


@dataclass(frozen=True)
class PipelineSettings:
    """The frame pipeline: queue bound, age budget and clock-skew guard, micro-batch size, image cap, snapshots."""

    queue_size: int = knob(
        64,
        'Decoded frames waiting for the scorer; a frame that finds it full waits for room or is "overloaded".',
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
