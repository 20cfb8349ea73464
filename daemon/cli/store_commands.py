"""``musc-online store``: look after a line's records; ``prune`` removes frames older than the retention."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from daemon.cli.common import ConfigFile, Line, load_or_exit
from daemon.store import Retention, Store, StoreError

store_app = typer.Typer(help="Look after a line's records in the store.", no_args_is_help=True)


@store_app.command("prune")
def prune_command(
    line: Line = 3,
    config_file: ConfigFile = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    keep_days: Annotated[
        int | None, typer.Option(min=1, help="Keep this many days instead of [store] keep_days.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object instead of a sentence.")] = False,
) -> None:
    """Remove the line's frames and decisions older than keep_days, and their pictures, in batches of 1,000.

    Corrections and the frames they name, judges, events and the status counts are kept. A running line does the
    same by itself every hour; this is for a first clean-up, a shorter retention, or to see what would go.
    """
    config = load_or_exit(line, config_file)
    days = config.store.keep_days if keep_days is None else keep_days
    if not days:
        typer.secho("retention is off ([store] keep_days = 0): pass --keep-days D to prune", fg="red", err=True)
        raise typer.Exit(2)
    try:
        with Store.open(config.store_url) as store:
            retention = Retention(store, line, days, config.artifacts_dir)
            now, started = time.time(), time.monotonic()
            pruned = retention.dry_run(now) if dry_run else retention.prune(now)[0]
    except StoreError as error:
        typer.secho(f"store error: {error}", fg="red", err=True)
        raise typer.Exit(1) from None
    cutoff = time.strftime("%Y-%m-%d %H:%M", time.localtime(retention.cutoff(now)))
    report = {"line": line, "keep_days": days, "before": cutoff, "dry_run": dry_run, **vars(pruned)}
    report["seconds"] = round(time.monotonic() - started, 3)
    if json_output:
        typer.echo(json.dumps(report))
        return
    verb, pictures = ("would remove", "named") if dry_run else ("removed", "deleted")
    typer.echo(
        f"line {line}: {verb} {pruned.frames} frames and {pruned.decisions} decisions received before {cutoff} "
        f"(keep_days {days}), pictures {pictures}: {pruned.pictures}"
    )
