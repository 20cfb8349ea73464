"""What the command-line apps share: the ``--line`` and ``--config`` options, and loading a line's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from daemon.config import ConfigError, DaemonConfig, load_config

Line = Annotated[int, typer.Option(help="Line number (selects the line's endpoints and store).")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="TOML over the defaults, with optional lines.N tables.")
]


def load_or_exit(line: int, config: Path | None) -> DaemonConfig:
    """The line's settings, or exit 2 with the one-line reason on stderr."""
    try:
        return load_config(line, config)
    except ConfigError as error:
        typer.secho(f"config error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
