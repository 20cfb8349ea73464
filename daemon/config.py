"""A line's settings: the schema's defaults, overridden by TOML files and ``MUSC_*`` variables, with sources.

The schema is the settings classes (library: model, musc, online, thresholds; daemon: paths, transport,
pipeline, store, artifacts, http): each holds its names, types, defaults and checks once. Layers, later ones
win: the defaults, the ``--config`` file, the line's overrides (``line-<N>.toml`` in the config folder, then
a ``[lines.<N>]`` table of the ``--config`` file), then ``MUSC_<SECTION>__<KEY>`` variables. Every value is
converted where it is read, so a type error names the key and the layer; range checks run when the classes
are built and are reported with the value's source. ``default_toml`` renders the schema as the commented
defaults file (``config/default.toml`` is that text, checked by a test).
"""

from __future__ import annotations

import json
import os
import textwrap
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from daemon.settings import (
    ArtifactsSettings,
    HttpSettings,
    LineOnlineSettings,
    LineTransportSettings,
    PathsSettings,
    PipelineSettings,
    StoreSettings,
)
from musc_online.online.settings import ThresholdSettings
from musc_online.settings import ModelSettings, MuscSettings, SettingError, exposed_fields
from musc_online.transport import CurveServerKeys, TransportSettings, line_ports

ENV_PREFIX = "MUSC_"
DEFAULT_SOURCE = "default"
CONFIG_DIR = Path("config")  # where line-<N>.toml files are looked for, relative to the working directory

SECTIONS: dict[str, type] = {
    "paths": PathsSettings,
    "transport": LineTransportSettings,
    "model": ModelSettings,
    "musc": MuscSettings,
    "online": LineOnlineSettings,
    "thresholds": ThresholdSettings,
    "pipeline": PipelineSettings,
    "store": StoreSettings,
    "artifacts": ArtifactsSettings,
    "http": HttpSettings,
}
NESTED = {"online": ("musc", "thresholds")}  # sections built into another one's fields of the same name
SCHEMA: dict[str, Any] = {
    f"{section}.{item.name}": typing.get_type_hints(cls)[item.name]
    for section, cls in SECTIONS.items()
    for item in exposed_fields(cls)
}


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names the key and its source."""


@dataclass(frozen=True)
class DaemonConfig:
    """The resolved, checked settings of one line, with where each value came from."""

    line: int
    paths: PathsSettings
    transport: LineTransportSettings
    model: ModelSettings
    musc: MuscSettings
    online: LineOnlineSettings
    thresholds: ThresholdSettings
    pipeline: PipelineSettings
    store: StoreSettings
    artifacts: ArtifactsSettings
    http: HttpSettings
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
    def http_port(self) -> int:
        """The port of ``/healthz``, ``/readyz`` and ``/metrics`` (0, system-chosen, when ``base_port`` is 0)."""
        return line_ports(self.line, self.transport.base_port)[3]

    def device(self) -> Any:
        """The torch device ``model.device`` names (imports torch: only for a line that scores)."""
        from musc_online.device import resolve_device

        try:
            return resolve_device(self.model.device)
        except ValueError as error:
            raise ConfigError(
                f"model.device = {_toml(self.model.device)} (from {self.sources['model.device']}): {error}"
            ) from None

    def transport_settings(self) -> TransportSettings:
        """The line's socket settings: its port block, limits and, when configured, CURVE keys."""
        section = self.transport
        curve = None
        if section.curve_server_secret is not None and section.curve_allowed_clients is not None:
            curve = CurveServerKeys(section.curve_server_secret, section.curve_allowed_clients)
        return TransportSettings.for_line(
            self.line,
            section.base_port,
            host=section.host,
            hwm=section.hwm,
            max_message_bytes=section.max_message_bytes,
            curve=curve,
        )

    def derived(self) -> dict[str, Any]:
        """What ``--line`` and the settings make of the line: folders, store URL, endpoints, HTTP port."""
        transport = self.transport_settings()
        return {
            "line_dir": str(self.line_dir),
            "state_dir": str(self.state_dir),
            "artifacts_dir": str(self.artifacts_dir),
            "store_url": _masked(self.store_url),
            "frames_endpoint": transport.frames_endpoint,
            "decisions_endpoint": transport.decisions_endpoint,
            "control_endpoint": transport.control_endpoint,
            "http_port": self.http_port,
        }

    def as_dict(self) -> dict[str, Any]:
        """The resolved settings as plain data (TOML's types), the derived values, and each key's source; a store
        URL's password is shown as ***."""
        resolved: dict[str, Any] = {"line": self.line}
        for section, cls in SECTIONS.items():
            values = getattr(self, section)
            resolved[section] = {item.name: _plain(getattr(values, item.name)) for item in exposed_fields(cls)}
        if resolved["store"]["url"]:
            resolved["store"]["url"] = _masked(resolved["store"]["url"])
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


def default_toml() -> str:
    """The schema as a commented TOML file of every setting at its default: what ``config/default.toml`` holds."""
    lines = [
        "# musc-daemon: every setting at its default, with what it does. Generated from the settings classes",
        "# (`musc-daemon config defaults`); the daemon needs no copy of it to run.",
        "#",
        "# Override any part: `musc-daemon ... --config FILE`, then the line's own `config/line-<N>.toml` and a",
        "# `[lines.<N>]` table in FILE, then environment variables `MUSC_<SECTION>__<KEY>` (e.g.",
        "# MUSC_ONLINE__WINDOW=32, MUSC_MUSC__R_LIST=[1,3]). `musc-daemon config show --line N` prints the result",
        "# and where each value came from. Relative paths resolve against the current working directory.",
    ]
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]", f"# {(cls.__doc__ or '').splitlines()[0]}"]
        for item in exposed_fields(cls):
            lines += textwrap.wrap(item.metadata["help"], 110, initial_indent="# ", subsequent_indent="# ")
            lines.append(f"{item.name} = {_toml(_plain(item.default))}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ reading values
def _toml(value: Any) -> str:
    """A plain value (str, bool, int, float or list of them) written as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)


def _masked(url: str) -> str:
    """A URL with its password hidden, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML's true is no integer


def _convert(value: Any, kind: Any) -> Any:
    """``value`` as TOML gave it, converted to the annotation ``kind``; TypeError saying what was expected."""
    inner = _optional(kind)
    if inner is not None:
        return None if value == "" else _convert(value, inner)
    if typing.get_origin(kind) is typing.Literal:
        kind = str
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
    """The value of ``key`` read from ``source``; a ConfigError naming both when it is of the wrong type."""
    try:
        return _convert(raw, SCHEMA[key])
    except TypeError as error:
        raise ConfigError(f"{key} = {_toml(raw)} (from {source}): {error}") from None


Layer = dict[str, tuple[Any, str]]  # "section.key" -> (converted value, source)


def _read(path: Path) -> dict[str, Any]:
    """A TOML file's table; a ConfigError when it is missing or not TOML."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None


def _defaults_layer() -> Layer:
    return {
        f"{section}.{item.name}": (
            _setting(f"{section}.{item.name}", _plain(item.default), DEFAULT_SOURCE),
            DEFAULT_SOURCE,
        )
        for section, cls in SECTIONS.items()
        for item in exposed_fields(cls)
    }


def _file_layer(table: Mapping[str, Any], where: str, source: str) -> Layer:
    """The settings of a table of sections; unknown sections and keys are refused."""
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
    textual = (_optional(kind) or kind) in (str, Path) or typing.get_origin(kind) is typing.Literal
    return text if textual and not isinstance(value, str) else value


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


# ------------------------------------------------------------------------------------------------ building
def _build(resolved: Layer) -> dict[str, Any]:
    """Every section's settings object, built (and so checked) from the resolved values."""
    built: dict[str, Any] = {}
    for section, cls in sorted(SECTIONS.items(), key=lambda item: item[0] in NESTED):
        values = {item.name: resolved[f"{section}.{item.name}"][0] for item in exposed_fields(cls)}
        values.update({name: built[name] for name in NESTED.get(section, ())})
        try:
            built[section] = cls(**values)
        except SettingError as error:
            keys = [key if "." in key else f"{section}.{key}" for key in error.keys]
            named = ", ".join(f"{key} = {_toml(_plain(resolved[key][0]))} (from {resolved[key][1]})" for key in keys)
            raise ConfigError(f"{named}: {error.message}") from None
    return built


def load_config(
    line: int,
    config_file: Path | None = None,
    env: Mapping[str, str] = os.environ,
    config_dir: Path = CONFIG_DIR,
) -> DaemonConfig:
    """The checked settings of ``line``: defaults, ``config_file``, the line's overrides, then ``env``."""
    if line < 0:
        raise ConfigError(f"line must be a non-negative integer, got {line}")
    layers = [_defaults_layer()]
    line_table: Layer = {}
    if config_file is not None:
        table = _read(config_file)
        if "lines" in table:
            line_table = _line_layers(table.pop("lines"), line, config_file)
        layers.append(_file_layer(table, str(config_file), f"file {config_file}"))
    line_file = config_dir / f"line-{line}.toml"
    if line_file.is_file():
        layers.append(_file_layer(_read(line_file), str(line_file), f"line override {line_file}"))
    layers += [line_table, _env_layer(env)]

    resolved: Layer = {}
    for layer in layers:
        resolved.update(layer)
    config = DaemonConfig(line=line, **_build(resolved), sources={key: resolved[key][1] for key in SCHEMA})
    try:
        line_ports(line, config.transport.base_port)
    except ValueError as error:
        base_port, source = resolved["transport.base_port"]
        raise ConfigError(f"transport.base_port = {base_port} (from {source}): {error}") from None
    return config
