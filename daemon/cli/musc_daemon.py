"""The ``musc-daemon`` app: runs the inspection service of one line, and shows its settings."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from daemon.cli.common import load_or_exit
from daemon.config import default_toml
from daemon.observability import configure_logging

log = logging.getLogger("musc.daemon")

app = typer.Typer(
    help="musc-daemon: the live inspection service of a line.", no_args_is_help=True, add_completion=False
)
config_app = typer.Typer(help="The line's settings: defaults, files and MUSC_* variables.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.command()
def start(
    line: Annotated[int, typer.Option(help="Line number: selects endpoints, store and artifact folder.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML over the defaults, with optional lines.N tables.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    log_json: Annotated[bool, typer.Option(help="One JSON object per log line (else plain text).")] = True,
) -> None:
    """Run the line's inspection service until SIGTERM, Ctrl-C or a shutdown command; exits 0 after a clean stop.

    A setup that cannot work exits 2 (a supervisor should not restart it); an unreachable store exits 1.
    """
    settings = load_or_exit(line, config)
    configure_logging(line, log_level, log_json)
    if settings.ignored_env:
        log.warning("ignoring MUSC_ variables that are not settings: %s", ", ".join(settings.ignored_env))
    from daemon.service import LineDaemon, StartError

    try:
        service = LineDaemon(settings)
    except StartError as error:  # exit 1: worth another try (a supervisor restarts it); 2: fix the setup first
        typer.secho(f"cannot start line {line}: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1 if error.retry else 2) from None
    raise typer.Exit(service.run())


@config_app.command("show")
def show(
    line: Annotated[int, typer.Option(help="Line number: selects endpoints, store and artifact folder.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML over the defaults, with optional lines.N tables.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON with derived values and each key's source.")] = False,
) -> None:
    """Print the line's resolved settings; a comment names where each non-default value came from."""
    settings = load_or_exit(line, config)
    typer.echo(json.dumps(settings.as_dict(), indent=2) if as_json else settings.show(), nl=as_json)


@config_app.command("defaults")
def defaults() -> None:
    """Print every setting at its default, with what it does (the text of config/default.toml)."""
    typer.echo(default_toml(), nl=False)


@app.callback()
def main() -> None:
    """The live inspection service of one line."""


if __name__ == "__main__":
    app()
