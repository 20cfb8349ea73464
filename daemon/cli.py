"""The ``musc-daemon`` command: runs the inspection service of one line."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="musc-daemon: the live inspection service of a line.", no_args_is_help=True, add_completion=False
)


@app.command()
def start(line: int = typer.Option(..., help="Line number: selects endpoints, store and artifact folder.")) -> None:
    """Start the daemon for a line (not built yet: it arrives with the daemon issue)."""
    typer.secho(
        f"musc-daemon start --line {line}: the daemon is not implemented yet; "
        "use 'musc-online eval' for batch scoring.",
        fg=typer.colors.YELLOW,
        err=True,
    )
    raise typer.Exit(3)


@app.callback()
def main() -> None:
    """The live inspection service of one line."""


if __name__ == "__main__":
    app()
