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

import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from daemon.config_layers import (
    DEFAULT_SOURCE,
    SCHEMA,
    SECTIONS,
    ConfigError,
    Layer,
    defaults_layer,
    env_layer,
    file_layer,
    line_layers,
    plain,
    read_toml,
    toml_value,
)
from daemon.settings import (
    ArtifactsSettings,
    HttpSettings,
    LineOnlineSettings,
    LineTransportSettings,
    MqttSettings,
    OpcuaSettings,
    PathsSettings,
    PipelineSettings,
    StoreSettings,
)
from musc_online.backbones.weights_sources import presence
from musc_online.cameras.settings import CameraSettings
from musc_online.online.settings import ThresholdSettings
from musc_online.roi import CareArea, care_text
from musc_online.settings import (
    ModelSettings,
    MuscSettings,
    SettingError,
    TileSettings,
    backbone_image_size,
    exposed_fields,
)
from musc_online.transport import TransportSettings, line_ports

__all__ = ["DEFAULT_SOURCE", "SCHEMA", "ConfigError", "DaemonConfig", "default_toml", "load_config"]

CONFIG_DIR = Path("config")  # where line-<N>.toml files are looked for, relative to the working directory

NESTED = {"online": ("musc", "thresholds", "tiles")}  # sections built into another one's fields of the same name


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
    tiles: TileSettings
    pipeline: PipelineSettings
    store: StoreSettings
    artifacts: ArtifactsSettings
    http: HttpSettings
    camera: CameraSettings
    mqtt: MqttSettings
    opcua: OpcuaSettings
    sources: Mapping[str, str]  # "section.key" -> "default", "file PATH", "line override PATH", "env NAME"
    ignored_env: tuple[str, ...] = ()  # MUSC_ variables that are no MUSC_<SECTION>__<KEY> setting (service links)

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
                f"model.device = {toml_value(self.model.device)} (from {self.sources['model.device']}): {error}"
            ) from None

    def care_area(self) -> CareArea | None:
        """The line's care area (``[camera]`` care_mask or care_polygons; reads the mask), None for the whole frame;
        a ConfigError naming the setting, its value and its source when it cannot be used."""
        try:
            return self.camera.care_area(self.model.image_size)
        except SettingError as error:
            key = f"camera.{error.keys[0]}"
            value = toml_value(plain(getattr(self.camera, error.keys[0])))
            raise ConfigError(f"{key} = {value} (from {self.sources[key]}): {error.message}") from None

    def transport_settings(self) -> TransportSettings:
        """The line's socket settings: its port block, limits and, when configured, CURVE keys."""
        section = self.transport
        return TransportSettings.for_line(
            self.line,
            section.base_port,
            host=section.host,
            hwm=section.hwm,
            frames_hwm=self.pipeline.frames_hwm(section.max_message_bytes, section.hwm),
            max_message_bytes=section.max_message_bytes,
            curve=section.server_keys(),
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
            "backbone_weights": presence(self.model.backbone, self.model.weights),
            "care_area": _care_text(self),
        }

    def as_dict(self) -> dict[str, Any]:
        """The resolved settings as plain data (TOML's types), the derived values, and each key's source; a store
        URL's password is shown as ***."""
        resolved: dict[str, Any] = {"line": self.line}
        for section, cls in SECTIONS.items():
            values = getattr(self, section)
            resolved[section] = {item.name: plain(getattr(values, item.name)) for item in exposed_fields(cls)}
        if resolved["store"]["url"]:
            resolved["store"]["url"] = _masked(resolved["store"]["url"])
        derived = {"derived": self.derived(), "sources": dict(self.sources), "ignored_env": list(self.ignored_env)}
        return {**resolved, **derived}

    def show(self) -> str:
        """The resolved settings as TOML, each non-default value followed by its source, derived values last."""
        settings = self.as_dict()
        lines = [f"# musc-daemon settings of line {self.line}; comments name where non-default values came from."]
        for section in SECTIONS:
            lines += ["", f"[{section}]"]
            for key, value in settings[section].items():
                source = self.sources[f"{section}.{key}"]
                comment = "" if source == DEFAULT_SOURCE else f"  # {source}"
                lines.append(f"{key} = {toml_value(value)}{comment}")
        if self.ignored_env:
            lines += ["", f"# ignored, not MUSC_<SECTION>__<KEY> settings: {', '.join(self.ignored_env)}"]
        lines += ["", "# derived from --line and the settings above:"]
        lines += [f"# {key} = {toml_value(value)}" for key, value in settings["derived"].items()]
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
            lines.append(f"{item.name} = {toml_value(plain(item.default))}")
    return "\n".join(lines) + "\n"


def _care_text(config: DaemonConfig) -> str:
    """Whether a care area is in force and how much of the frame it covers, for ``config show``."""
    try:
        care = config.care_area()
    except ConfigError as error:
        return f"unusable: {error}"
    return care_text(None if care is None else care.describe())


def _masked(url: str) -> str:
    """A URL with its password hidden, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


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
            named = ", ".join(
                f"{key} = {toml_value(plain(resolved[key][0]))} (from {resolved[key][1]})" for key in keys
            )
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
    layers = [defaults_layer()]
    line_table: Layer = {}
    if config_file is not None:
        table = read_toml(config_file)
        if "lines" in table:
            line_table = line_layers(table.pop("lines"), line, config_file)
        layers.append(file_layer(table, str(config_file), f"file {config_file}"))
    line_file = config_dir / f"line-{line}.toml"
    if line_file.is_file():
        layers.append(file_layer(read_toml(line_file), str(line_file), f"line override {line_file}"))
    variables, ignored = env_layer(env)
    layers += [line_table, variables]

    resolved: Layer = {}
    for layer in layers:
        resolved.update(layer)
    backbone, size = resolved["model.backbone"][0], resolved["model.image_size"][0]
    if size is None and backbone_image_size(backbone):  # unset: the backbone's own size, the one eval uses
        resolved["model.image_size"] = (backbone_image_size(backbone), f"backbone {backbone} default")
    sources = {key: resolved[key][1] for key in SCHEMA}
    config = DaemonConfig(line=line, **_build(resolved), sources=sources, ignored_env=ignored)
    try:
        line_ports(line, config.transport.base_port)
    except ValueError as error:
        base_port, source = resolved["transport.base_port"]
        raise ConfigError(f"transport.base_port = {base_port} (from {source}): {error}") from None
    return config
