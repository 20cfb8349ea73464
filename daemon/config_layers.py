"""Where a line's settings come from: the schema's sections, and the layers read from defaults, TOML files and
``MUSC_<SECTION>__<KEY>`` variables, each value converted where it is read so that a type error names the key
and its source. ``daemon.config`` stacks these layers and builds the checked settings from them.
"""

from __future__ import annotations

import json
import logging
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
from musc_online.cameras.settings import CameraSettings
from musc_online.online.settings import ThresholdSettings
from musc_online.roi import Polygons
from musc_online.settings import ModelSettings, MuscSettings, TileSettings, exposed_fields

log = logging.getLogger("musc.config")

ENV_PREFIX = "MUSC_"
DEFAULT_SOURCE = "default"

SECTIONS: dict[str, type] = {
    "paths": PathsSettings,
    "transport": LineTransportSettings,
    "model": ModelSettings,
    "musc": MuscSettings,
    "online": LineOnlineSettings,
    "thresholds": ThresholdSettings,
    "tiles": TileSettings,
    "pipeline": PipelineSettings,
    "store": StoreSettings,
    "artifacts": ArtifactsSettings,
    "http": HttpSettings,
    "camera": CameraSettings,
    "mqtt": MqttSettings,
    "opcua": OpcuaSettings,
}
SCHEMA: dict[str, Any] = {
    f"{section}.{item.name}": typing.get_type_hints(cls)[item.name]
    for section, cls in SECTIONS.items()
    for item in exposed_fields(cls)
}


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names the key and its source."""


def toml_value(value: Any) -> str:
    """A plain value (str, bool, int, float or list of them) written as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return repr(value)


def plain(value: Any) -> Any:
    """A setting's value as TOML holds it: paths as strings, None as the empty string, tuples as lists."""
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    return value


def _optional(kind: Any) -> Any | None:
    """``X`` for an ``X | None`` annotation, else None."""
    if isinstance(kind, types.UnionType):
        return next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML's true is no integer


def _is_polygons(value: Any) -> bool:
    """Whether a TOML value is a list of lists of [x, y] number pairs."""
    return isinstance(value, list) and all(
        isinstance(polygon, list) and all(_is_point(point) for point in polygon) for polygon in value
    )


def _is_point(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_int(v) or isinstance(v, float) for v in value)


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
    if kind == Polygons and _is_polygons(value):
        return tuple(tuple((float(x), float(y)) for x, y in polygon) for polygon in value)
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    expected[Polygons] = "a list of polygons, each a list of [x, y] points: [[[x, y], [x, y], [x, y]]]"
    raise TypeError(f"must be {expected.get(kind, 'a list of integers')}")


def _setting(key: str, raw: Any, source: str) -> Any:
    """The value of ``key`` read from ``source``; a ConfigError naming both when it is of the wrong type."""
    try:
        return _convert(raw, SCHEMA[key])
    except TypeError as error:
        raise ConfigError(f"{key} = {toml_value(raw)} (from {source}): {error}") from None


Layer = dict[str, tuple[Any, str]]  # "section.key" -> (converted value, source)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table; a ConfigError when it is missing or not TOML."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None


def defaults_layer() -> Layer:
    return {
        f"{section}.{item.name}": (
            _setting(f"{section}.{item.name}", plain(item.default), DEFAULT_SOURCE),
            DEFAULT_SOURCE,
        )
        for section, cls in SECTIONS.items()
        for item in exposed_fields(cls)
    }


def file_layer(table: Mapping[str, Any], where: str, source: str) -> Layer:
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


def line_layers(lines: Any, line: int, path: Path) -> Layer:
    """The ``[lines.<N>]`` table of ``path`` for this line; every line's table is checked, typos anywhere refused."""
    if not isinstance(lines, dict):
        raise ConfigError(f"'lines' in {path} must hold tables such as [lines.3]")
    chosen: Layer = {}
    for name, table in lines.items():
        if not (name.isdigit() and isinstance(table, dict)):
            raise ConfigError(f"[lines.{name}] in {path} must be a table named by a line number, such as [lines.3]")
        where = f"{path} [lines.{name}]"
        layer = file_layer(table, where, f"line override {where}")
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


def env_layer(env: Mapping[str, str]) -> tuple[Layer, tuple[str, ...]]:
    """The settings of ``MUSC_<SECTION>__<KEY>`` variables, and the ``MUSC_`` names that are not of that shape.

    Only the double-underscore shape is a setting, and one naming no setting is refused (a typo must not pass
    unnoticed). Other ``MUSC_`` names are not ours to judge: Kubernetes gives every pod ``MUSC_REVIEW_PORT``,
    ``MUSC_REVIEW_SERVICE_HOST`` and the like for the ``musc-review`` Service, and refusing them made every line
    exit after a restart. Those are returned, to be shown and logged, and otherwise left alone.
    """
    layer: Layer = {}
    ignored: list[str] = []
    for variable, text in sorted(env.items()):
        if not variable.startswith(ENV_PREFIX):
            continue
        section, shaped, key = variable.removeprefix(ENV_PREFIX).lower().partition("__")
        if not shaped:
            ignored.append(variable)
            continue
        name = f"{section}.{key}"
        if name not in SCHEMA:
            known = "" if section in SECTIONS else f"; sections: {', '.join(SECTIONS)}"
            raise ConfigError(
                f"unknown environment variable {variable}: no setting '{name}' "
                f"(expected {ENV_PREFIX}<SECTION>__<KEY>, e.g. {ENV_PREFIX}ONLINE__WINDOW{known})"
            )
        source = f"env {variable}"
        layer[name] = (_setting(name, _env_value(text, SCHEMA[name]), source), source)
    return layer, tuple(ignored)
