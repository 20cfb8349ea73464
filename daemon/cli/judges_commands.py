"""``musc-online judges``: curate a running line's judge bank, and move banks between lines by file or store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from daemon.cli.common import ConfigFile, Line, load_or_exit
from daemon.cli.line_commands import running_line
from daemon.store import Store

ACTIONS = {"list": None, "add": "folder", "remove": "id", "export": "file", "import": "file", "banks": None}


def judges_command(
    action: Annotated[
        str,
        typer.Argument(
            help="list, add DIR, remove ID, export FILE, import FILE, or banks (those in the store). FILE lies in the "
            "line's exports/ folder (<data_dir>/line-<N>/exports) or [paths] export_dir; the line refuses any other."
        ),
    ],
    target: Annotated[str | None, typer.Argument(help="The folder, judge id or file the action needs.")] = None,
    store_name: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="export/import: a bank name in the line's store instead of a file, so a line on any host of the "
            "plant can import it.",
        ),
    ] = None,
    line: Line = 3,
    config_file: ConfigFile = None,
) -> None:
    """Curate a running line's judge bank: seed it from good images, prune it, move it between lines.

    A bank is refused by a line whose backbone, image size, layers or degrees differ, with what differs.
    """
    if action not in ACTIONS:
        typer.secho(f"error: unknown action {action!r}; choose {', '.join(ACTIONS)}", fg="red", err=True)
        raise typer.Exit(2)
    if action == "banks":
        _print_banks(line, config_file)
        return
    args: dict[str, str] = {"action": action}
    if store_name is not None:
        if action not in ("export", "import"):
            typer.secho(f"error: --store goes with export and import, not {action!r}", fg="red", err=True)
            raise typer.Exit(2)
        args["store_name"] = store_name
    elif ACTIONS[action]:
        if not target:
            typer.secho(f"error: 'judges {action}' needs a {ACTIONS[action]}", fg="red", err=True)
            raise typer.Exit(2)
        args[ACTIONS[action]] = str(Path(target).resolve()) if ACTIONS[action] != "id" else target
    result = running_line(line, config_file, "judges", **args)
    if action == "list":
        table = Table(title=f"Judges of line {line}")
        for column in ("id", "source", "score"):
            table.add_column(column)
        for judge in result:
            table.add_row(judge["id"], judge["source"], "-" if judge["score"] is None else f"{judge['score']:.4f}")
        Console().print(table)
    else:
        typer.echo(json.dumps(result))


def _print_banks(line: int, config_file: Path | None) -> None:
    """The judge banks kept in the line's store (no daemon needed)."""
    config = load_or_exit(line, config_file)
    with Store.open(config.store_url) as store:
        banks = store.judge_banks()
    table = Table(title="Judge banks in the store")
    for column in ("name", "from line", "judges", "backbone", "size", "saved"):
        table.add_column(column)
    for bank in banks:
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(bank.created_at))
        fingerprint = bank.fingerprint or {}
        row = (bank.name, str(bank.from_line), str(bank.judges), str(fingerprint.get("backbone", "?")))
        table.add_row(*row, str(fingerprint.get("image_size", "?")), saved)
    Console().print(table)
