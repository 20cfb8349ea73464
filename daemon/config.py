"""The daemon's settings for one line: ``config/default.toml``, overridden by files and ``MUSC_*`` variables.

Layers, later ones win: the built-in defaults, the ``--config`` file, the line's overrides
(``line-<N>.toml`` beside the defaults, then a ``[lines.<N>]`` table in the ``--config`` file), then
environment variables ``MUSC_<SECTION>__<KEY>``. Every value is type- and range-checked where it is read,
so an error names the key and the layer it came from; the resolved settings also feed the library's own
settings classes, whose checks are reported against their section.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch

from musc_online.backbones import available_backbones
from musc_online.online.settings import ADMISSION_POLICIES, NORMALISATIONS, OnlineSettings
from musc_online.online.thresholds import ThresholdSettings
from musc_online.settings import MuscSettings
from musc_online.transport import PORTS_PER_LINE, CurveServerKeys, TransportSettings

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "config" / "default.toml"
ENV_PREFIX = "MUSC_"
HTTP_PORT_OFFSET = 3  # the line's HTTP port (health, metrics) follows frames, decisions and control
DEFAULT_SOURCE = "default"


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names the key and its source."""


@dataclass(frozen=True)
class PathsSection:
    """Where the line's folder lives: ``<data_dir>/line-<N>/`` holds the store, state and artifacts."""

    data_dir: Path


@dataclass(frozen=True)
class TransportSection:
    """The line's sockets: bind address, port block, queue and message limits, optional CURVE keys."""

    host: str
    base_port: int
    hwm: int
    max_message_bytes: int
    curve_server_secret: Path | None
    curve_allowed_clients: Path | None


@dataclass(frozen=True)
class ModelSection:
    """The backbone that extracts features; empty ``layers`` and ``weights`` mean the backbone's defaults."""

    backbone: str
    image_size: int
    layers: tuple[int, ...]
    weights: Path | None
    device: str


@dataclass(frozen=True)
class MuscSection:
    """MuSc's own knobs (LNAMD degrees, MSM interval, RsCIN windows), as ``MuscSettings`` takes them."""

    r_list: tuple[int, ...]
    topmin_max: float
    topk_rounding: str
    k_list: tuple[int, ...]


@dataclass(frozen=True)
class OnlineSection:
    """The online scorer's knobs, plus the folder of good images seeded as judges at the first start."""

    window: int
    judges_per_frame: int
    admission: str
    rscin_normalisation: str
    history: int
    calibration_scores: int
    defect_match: float
    judges_dir: Path | None


@dataclass(frozen=True)
class ThresholdsSection:
    """How the decision band is calibrated from normal scores, as ``ThresholdSettings`` takes it."""

    quantile: float
    low_margin: float
    high_margin: float
    min_scores: int


@dataclass(frozen=True)
class PipelineSection:
    """The frame pipeline: queue bound, age budget and clock-skew guard, micro-batch size, image cap, snapshots."""

    queue_size: int
    max_age_ms: float
    max_clock_skew_ms: float
    micro_batch: int
    max_image_pixels: int
    snapshot_every_s: float


@dataclass(frozen=True)
class StoreSection:
    """The SQLAlchemy URL of the line's records; None means SQLite in the line's folder."""

    url: str | None


@dataclass(frozen=True)
class ArtifactsSection:
    """Which frames are kept as images on disk, and for how long."""

    keep_ok_every: int
    max_files: int
    max_age_days: int


@dataclass(frozen=True)
class HttpSection:
    """Whether the line serves health checks and Prometheus metrics over HTTP."""

    enabled: bool


@dataclass(frozen=True)
class DaemonConfig:
    """The resolved, checked settings of one line, with where each value came from."""

    line: int
    paths: PathsSection
    transport: TransportSection
    model: ModelSection
    musc: MuscSection
    online: OnlineSection
    thresholds: ThresholdsSection
    pipeline: PipelineSection
    store: StoreSection
    artifacts: ArtifactsSection
    http: HttpSection
    sources: Mapping[str, str]  # "section.key" -> "default", "file PATH", "line override PATH", "env NAME"

    @property
    def line_dir(self) -> Path:
        """The line's own folder: ``<data_dir>/line-<N>``."""
        return self.paths.data_dir / f"line-{self.line}"

    @property
    def state_dir(self) -> Path:
        """Where the judge bank, window and thresholds are saved."""
        return self.line_dir / "state"

    @property
    def artifacts_dir(self) -> Path:
        """Where frames and heatmap overlays are kept."""
        return self.line_dir / "artifacts"

    @property
    def store_url(self) -> str:
        """The configured SQLAlchemy URL, or SQLite at ``<line dir>/store.db``."""
        return self.store.url or f"sqlite:///{self.line_dir / 'store.db'}"

    @property
    def first_port(self) -> int:
        """The first port of the line's block: frames; decisions, control and HTTP follow."""
        return self.transport.base_port + PORTS_PER_LINE * self.line

    @property
    def http_port(self) -> int:
        """The port of ``/healthz``, ``/readyz`` and ``/metrics`` (0, OS-chosen, when ``base_port`` is 0)."""
        return self.first_port + HTTP_PORT_OFFSET if self.transport.base_port else 0

    def device(self) -> torch.device:
        """The torch device ``model.device`` names: ``auto`` takes the GPU when CUDA is present, else the CPU."""
        if self.model.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.model.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"model.device = {_toml(self.model.device)} (from {self.sources['model.device']}): "
                "no GPU is visible to torch"
            )
        return device

    def transport_settings(self) -> TransportSettings:
        """The line's socket settings: its port block, limits and, when configured, CURVE keys."""
        section = self.transport
        curve = None
        if section.curve_server_secret is not None and section.curve_allowed_clients is not None:
            curve = CurveServerKeys(section.curve_server_secret, section.curve_allowed_clients)
        with self._section_errors("transport"):
            return TransportSettings.for_line(
                self.line,
                section.base_port,
                host=section.host,
                hwm=section.hwm,
                max_message_bytes=section.max_message_bytes,
                curve=curve,
            )

    def online_settings(self) -> OnlineSettings:
        """The scorer's settings from the ``online``, ``musc`` and ``thresholds`` sections."""
        with self._section_errors("thresholds"):
            thresholds = ThresholdSettings(**asdict(self.thresholds))
        musc = MuscSettings(**asdict(self.musc))
        online = asdict(self.online)
        del online["judges_dir"]  # the daemon's, not the scorer's
        with self._section_errors("online", "thresholds"):  # calibration_scores must cover min_scores
            return OnlineSettings(**online, musc=musc, thresholds=thresholds)

    @contextmanager
    def _section_errors(self, section: str, *related: str) -> Iterator[None]:
        """Report a settings class's ValueError as a ConfigError naming the section and the non-default values
        of it and of the ``related`` sections its checks involve."""
        try:
            yield
        except ValueError as error:
            changed = [
                f"{key} from {source}"
                for key, source in self.sources.items()
                if key.partition(".")[0] in (section, *related) and source != DEFAULT_SOURCE
            ]
            where = f" (non-default: {', '.join(changed)})" if changed else ""
            raise ConfigError(f"[{section}]: {error}{where}") from None

    def derived(self) -> dict[str, Any]:
        """What ``--line`` and the settings make of the line: folders, store URL, endpoints, HTTP port."""
        transport = self.transport_settings()
        return {
            "line_dir": str(self.line_dir),
            "state_dir": str(self.state_dir),
            "artifacts_dir": str(self.artifacts_dir),
            "store_url": self.store_url,
            "frames_endpoint": transport.frames_endpoint,
            "decisions_endpoint": transport.decisions_endpoint,
            "control_endpoint": transport.control_endpoint,
            "http_port": self.http_port,
        }

    def as_dict(self) -> dict[str, Any]:
        """The resolved settings as plain data (TOML's types), the derived values, and each key's source."""
        resolved: dict[str, Any] = {"line": self.line}
        for section in SECTIONS:
            resolved[section] = {key: _plain(value) for key, value in asdict(getattr(self, section)).items()}
        return {**resolved, "derived": self.derived(), "sources": dict(self.sources)}

    def show(self) -> str:
        """The resolved settings as TOML, each non-default value followed by its source, derived values last."""
        settings = self.as_dict()
        lines = [f"# musc-daemon settings of line {self.line}; comments name where non-default values came from."]
        for section in SECTIONS:
            lines += ["", f"[{section}]"]
            for key, value in settings[section].items():
                source = self.sources[f"{section}.{key}"]
                comment = "" if source == DEFAULT_SOURCE else f"  # {source}"
                lines.append(f"{key} = {_toml(value)}{comment}")
        lines += ["", "# derived from --line and the settings above:"]
        lines += [f"# {key} = {_toml(value)}" for key, value in settings["derived"].items()]
        return "\n".join(lines) + "\n"


SECTIONS: dict[str, type] = {
    name: kind for name, kind in typing.get_type_hints(DaemonConfig).items() if is_dataclass(kind)
}
SCHEMA: dict[str, Any] = {
    f"{section}.{key}": kind for section, cls in SECTIONS.items() for key, kind in typing.get_type_hints(cls).items()
}

Check = Callable[[Any], str | None]  # the problem with a value, or None when it is fine


def _at_least(low: int) -> Check:
    return lambda value: None if value >= low else f"must be at least {low}"


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _between(low: float, high: float) -> Check:
    return lambda value: None if low <= value <= high else f"must be in [{low}, {high}]"


def _one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _matches(pattern: str, what: str) -> Check:
    return lambda value: None if re.fullmatch(pattern, value) else f"must be {what}"


def _not_empty(value: tuple[int, ...]) -> str | None:
    return None if value else "must not be empty"


def _each(check: Check) -> Check:
    """Apply ``check`` to every element of a list."""

    def each(values: tuple[Any, ...]) -> str | None:
        problems = [problem for value in values if (problem := check(value))]
        return f"every element {problems[0]}" if problems else None

    return each


def _odd_positive(value: int) -> str | None:
    return None if value >= 1 and value % 2 == 1 else "must be a positive odd number"


# Per-key ranges; thresholds and cross-key rules are checked by ThresholdSettings and OnlineSettings.
CHECKS: dict[str, tuple[Check, ...]] = {
    "transport.base_port": (_at_least(0),),
    "transport.hwm": (_at_least(0),),
    "transport.max_message_bytes": (_at_least(1),),
    "model.backbone": (_one_of(*available_backbones()),),
    "model.image_size": (_at_least(1),),
    "model.layers": (_each(_at_least(0)),),
    "model.device": (_matches(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N"),),
    "musc.r_list": (_not_empty, _each(_odd_positive)),
    "musc.topmin_max": (_positive, _between(0.0, 1.0)),
    "musc.topk_rounding": (_one_of("ceil", "floor"),),
    "musc.k_list": (_not_empty, _each(_at_least(0))),
    "online.window": (_at_least(1),),
    "online.judges_per_frame": (_at_least(0),),
    "online.admission": (_one_of(*ADMISSION_POLICIES),),
    "online.rscin_normalisation": (_one_of(*NORMALISATIONS),),
    "online.history": (_at_least(0),),
    "online.defect_match": (_between(-1.0, 1.0),),
    "pipeline.queue_size": (_at_least(1),),
    "pipeline.max_age_ms": (_at_least(0),),
    "pipeline.max_clock_skew_ms": (_at_least(0),),
    "pipeline.micro_batch": (_at_least(1),),
    "pipeline.max_image_pixels": (_at_least(1),),
    "pipeline.snapshot_every_s": (_positive,),
    "artifacts.keep_ok_every": (_at_least(0),),
    "artifacts.max_files": (_at_least(1),),
    "artifacts.max_age_days": (_at_least(1),),
}


def _toml(value: Any) -> str:
    """A plain value (str, bool, int, float or list of them) written as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)


def _plain(value: Any) -> Any:
    """A setting's value as TOML holds it: paths as strings, None as the empty string, tuples as lists."""
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _optional(kind: Any) -> Any | None:
    """``X`` for an ``X | None`` annotation, else None."""
    if isinstance(kind, types.UnionType):
        return next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return None


def _is_text(kind: Any) -> bool:
    return (_optional(kind) or kind) in (str, Path)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML's true is no integer


def _convert(value: Any, kind: Any) -> Any:
    """``value`` as TOML gave it, converted to the annotation ``kind``; TypeError saying what was expected."""
    inner = _optional(kind)
    if inner is not None:
        return None if value == "" else _convert(value, inner)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and _is_int(value):
        return value
    if kind is float and (_is_int(value) or isinstance(value, float)):
        return float(value)
    if kind in (str, Path) and isinstance(value, str):
        if not value:
            raise TypeError("must not be empty")
        return value if kind is str else Path(value).expanduser().absolute()
    if kind == tuple[int, ...] and isinstance(value, list) and all(_is_int(item) for item in value):
        return tuple(value)
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    raise TypeError(f"must be {expected.get(kind, 'a list of integers')}")


def _setting(key: str, raw: Any, source: str) -> Any:
    """The checked value of ``key`` read from ``source``; a ConfigError naming both when it is not valid."""
    try:
        value = _convert(raw, SCHEMA[key])
    except TypeError as error:
        raise ConfigError(f"{key} = {_toml(raw)} (from {source}): {error}") from None
    if value is not None:
        for check in CHECKS.get(key, ()):
            if problem := check(value):
                raise ConfigError(f"{key} = {_toml(raw)} (from {source}): {problem}")
    return value


Layer = dict[str, tuple[Any, str]]  # "section.key" -> (checked value, source)


def _read(path: Path) -> dict[str, Any]:
    """A TOML file's table; a ConfigError when it is missing or not TOML."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None


def _file_layer(table: Mapping[str, Any], where: str, source: str) -> Layer:
    """The settings of a table of sections, each checked; unknown sections and keys are refused."""
    layer: Layer = {}
    for section, values in table.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}] in {where}; known: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"'{section}' in {where} must be a table ([{section}])")
        for key, raw in values.items():
            name = f"{section}.{key}"
            if name not in SCHEMA:
                raise ConfigError(f"unknown key '{name}' in {where}")
            layer[name] = (_setting(name, raw, source), source)
    return layer


def _line_layers(lines: Any, line: int, path: Path) -> Layer:
    """The ``[lines.<N>]`` table of ``path`` for this line; every line's table is checked, typos anywhere refused."""
    if not isinstance(lines, dict):
        raise ConfigError(f"'lines' in {path} must hold tables such as [lines.3]")
    chosen: Layer = {}
    for name, table in lines.items():
        if not (name.isdigit() and isinstance(table, dict)):
            raise ConfigError(f"[lines.{name}] in {path} must be a table named by a line number, such as [lines.3]")
        where = f"{path} [lines.{name}]"
        layer = _file_layer(table, where, f"line override {where}")
        if int(name) == line:
            chosen = layer
    return chosen


def _env_value(text: str, kind: Any) -> Any:
    """An environment value parsed as a TOML value when it is one, else the text itself (also for text settings)."""
    try:
        parsed = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    value = parsed["value"] if len(parsed) == 1 else text  # text such as "1\nkey = 2" is one value, not two
    return text if _is_text(kind) and not isinstance(value, str) else value


def _env_layer(env: Mapping[str, str]) -> Layer:
    """The settings of ``MUSC_<SECTION>__<KEY>`` variables; any other ``MUSC_`` variable is refused."""
    layer: Layer = {}
    for variable, text in sorted(env.items()):
        if not variable.startswith(ENV_PREFIX):
            continue
        section, _, key = variable.removeprefix(ENV_PREFIX).lower().partition("__")
        name = f"{section}.{key}"
        if name not in SCHEMA:
            raise ConfigError(
                f"unknown environment variable {variable}: no setting '{name}' "
                f"(expected {ENV_PREFIX}<SECTION>__<KEY>, e.g. {ENV_PREFIX}ONLINE__WINDOW)"
            )
        source = f"env {variable}"
        layer[name] = (_setting(name, _env_value(text, SCHEMA[name]), source), source)
    return layer


def _check_port_block(line: int, resolved: Layer) -> None:
    """Refuse a base port that puts the line's port block outside 1..65535."""
    base_port, source = resolved["transport.base_port"]
    if base_port == 0:
        return
    first = base_port + PORTS_PER_LINE * line
    if first + HTTP_PORT_OFFSET > 65535:
        raise ConfigError(
            f"transport.base_port = {base_port} (from {source}): line {line} would use ports "
            f"{first}..{first + HTTP_PORT_OFFSET}, outside 1..65535"
        )


def _check_curve(resolved: Layer) -> None:
    """CURVE needs both the daemon's secret key and the folder of allowed client keys, or neither."""
    (secret, secret_source), (clients, clients_source) = (
        resolved["transport.curve_server_secret"],
        resolved["transport.curve_allowed_clients"],
    )
    if (secret is None) != (clients is None):
        raise ConfigError(
            "transport.curve_server_secret and transport.curve_allowed_clients must be set together "
            f"(curve_server_secret from {secret_source}, curve_allowed_clients from {clients_source})"
        )


def load_config(
    line: int,
    config_file: Path | None = None,
    env: Mapping[str, str] = os.environ,
    config_dir: Path | None = None,
) -> DaemonConfig:
    """The checked settings of ``line``: defaults, ``config_file``, the line's overrides, then ``env``.

    ``config_dir`` is where ``line-<N>.toml`` is looked for (default: beside ``config/default.toml``).
    """
    if line < 0:
        raise ConfigError(f"line must be a non-negative integer, got {line}")
    if not DEFAULT_FILE.is_file():
        raise ConfigError(f"the built-in defaults {DEFAULT_FILE} are missing: is this a checkout of musc-online?")
    layers = [_file_layer(_read(DEFAULT_FILE), str(DEFAULT_FILE), DEFAULT_SOURCE)]
    line_table: Layer = {}
    if config_file is not None:
        table = _read(config_file)
        if "lines" in table:
            line_table = _line_layers(table.pop("lines"), line, config_file)
        layers.append(_file_layer(table, str(config_file), f"file {config_file}"))
    line_file = (config_dir or DEFAULT_FILE.parent) / f"line-{line}.toml"
    if line_file.is_file():
        layers.append(_file_layer(_read(line_file), str(line_file), f"line override {line_file}"))
    layers += [line_table, _env_layer(env)]

    resolved: Layer = {}
    for layer in layers:
        resolved.update(layer)
    missing = sorted(SCHEMA.keys() - resolved.keys())
    if missing:
        raise ConfigError(f"{DEFAULT_FILE} lacks the setting(s) {', '.join(missing)}")
    _check_port_block(line, resolved)
    _check_curve(resolved)

    config = DaemonConfig(
        line=line,
        **{
            section: cls(**{item.name: resolved[f"{section}.{item.name}"][0] for item in fields(cls)})
            for section, cls in SECTIONS.items()
        },
        sources={key: resolved[key][1] for key in SCHEMA},
    )
    config.online_settings()  # the scorer's own checks, reported against their section
    config.transport_settings()
    return config
