"""``musc-online weights``: list, fetch, verify and carry (export/import) backbones' pretrained weights.

None of these imports torch: they read, hash, download and move files (``musc_online.backbones.weights_*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from musc_online.backbones.weights_bundle import export_bundle, import_bundle
from musc_online.backbones.weights_fetch import fetch
from musc_online.backbones.weights_sources import SOURCES, WeightsError, check

weights_app = typer.Typer(
    help="Backbones' pretrained weights: list, fetch, verify, and carry them to a line with no network.",
    no_args_is_help=True,
)


def _fail(error: WeightsError) -> typer.Exit:
    typer.secho(f"error: {error}", fg="red", err=True)
    return typer.Exit(1)


@weights_app.command("list")
def list_command() -> None:
    """Every registered backbone with pretrained weights: where they come from, whether this machine has them,
    their size and SHA-256 against the pin."""
    table = Table(title="Backbone weights")
    for column in ("backbone", "source", "file", "size", "sha256", "status"):
        table.add_column(column, overflow="fold")
    for source in SOURCES.values():
        checked = check(source)
        name = f"{source.name} (tests only)" if source.test_only else source.name
        size = "-" if checked.size is None else f"{checked.size / 1e6:.1f} MB"
        table.add_row(
            name, source.origin.describe(), str(checked.path or "-"), size, checked.sha256 or "-", checked.status
        )
    Console(width=200).print(table)


@weights_app.command("fetch")
def fetch_command(
    name: Annotated[str, typer.Argument(help="The backbone whose weights to download (see `weights list`).")],
) -> None:
    """Download a backbone's weights from the Hugging Face hub into its cache (where the loader looks) and check
    them against the pinned SHA-256; with no network, say how to carry them in."""
    try:
        checked = fetch(name)
    except WeightsError as error:
        raise _fail(error) from None
    typer.echo(
        f"{checked.source.name}: {checked.path} ({checked.size} bytes, sha256 {checked.sha256}, {checked.status})"
    )


@weights_app.command("export")
def export_command(
    bundle: Annotated[Path, typer.Argument(help="The bundle to write (a tar file).")],
    names: Annotated[list[str] | None, typer.Argument(help="Backbones to export; default: all present here.")] = None,
) -> None:
    """Write the weights of the named backbones (default: every one present and sound) to one bundle."""
    chosen = names or [s.name for s in SOURCES.values() if not s.test_only and check(s).ok]
    if not chosen:
        raise _fail(WeightsError("no verified weights on this machine to export"))
    try:
        entries = export_bundle(bundle, chosen)
    except WeightsError as error:
        raise _fail(error) from None
    for entry in entries:
        typer.echo(f"exported {entry['backbone']}: {entry['size']} bytes, sha256 {entry['sha256']}")
    typer.echo(f"wrote {bundle}")


@weights_app.command("import")
def import_command(bundle: Annotated[Path, typer.Argument(help="A bundle written by `weights export`.")]) -> None:
    """Verify every file of a bundle, then place each where the loader finds it; a bad bundle places nothing."""
    try:
        placed = import_bundle(bundle)
    except WeightsError as error:
        raise _fail(error) from None
    for name, path in placed:
        typer.echo(f"imported {name}: {path}")


@weights_app.command("verify")
def verify_command() -> None:
    """Check every installed weight file against its pinned SHA-256 (or the hub's); exit 1 on any mismatch."""
    bad = 0
    for source in SOURCES.values():
        checked = check(source)
        if checked.path is not None:
            typer.echo(f"{source.name}: {checked.status} ({checked.path})")
            bad += checked.ok is False
    if bad:
        typer.secho(f"error: {bad} weight file(s) do not match their checksums", fg="red", err=True)
        raise typer.Exit(1)
