"""``musc-online review``: the review queue in a terminal or on a web page, and list, mark, undo."""

from __future__ import annotations

import getpass
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from daemon.cli.common import ConfigFile, Line, load_or_exit
from daemon.config import DaemonConfig, load_config
from daemon.review.queue import QueueLoader, describe, failed_corrections, mark, parse_since, review_queue, undo
from daemon.review.terminal import interactive
from daemon.store import LABELS, Store, StoreError

if TYPE_CHECKING:
    from daemon.review.server import Listen
    from daemon.review.station import ConfigLoader, LineQueue

review_app = typer.Typer(
    help="Review the line's unsure and defect decisions and correct them; the daemon learns from them live.",
    add_completion=False,
)

Operator = Annotated[str | None, typer.Option(help="Who is reviewing (default: $USER).")]
LabelFilter = Annotated[str | None, typer.Option("--label", help="Only this label: unsure, defect or ok.")]
Camera = Annotated[str | None, typer.Option(help="Only frames from this camera.")]
Since = Annotated[str | None, typer.Option(help="Only frames received since: ISO 8601, or relative like -10m.")]
Limit = Annotated[int, typer.Option(help="At most this many items.")]


def _operator(name: str | None) -> str:
    try:
        return name or getpass.getuser()
    except (KeyError, OSError):
        raise typer.BadParameter("no user name found: pass --operator NAME", param_hint="--operator") from None


def _filters(label: str | None, camera: str | None, since: str | None, limit: int) -> dict[str, Any]:
    """The command line's queue filters as ``review_queue`` takes them, checked once up front."""
    if label is not None and label not in LABELS:
        raise typer.BadParameter(f"must be one of {', '.join(LABELS)}", param_hint="--label")
    try:
        start = None if since is None else parse_since(since)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None
    labels = (label,) if label else ("unsure", "defect")
    return {"labels": labels, "camera": camera, "since": start, "limit": limit}


def _loader(
    store: Store, line: int, label: str | None, camera: str | None, since: str | None, limit: int
) -> QueueLoader:
    """The line's queue with the command line's filters."""
    return partial(review_queue, store, line, **_filters(label, camera, since, limit))


@contextmanager
def _opened(line: int, config_file: Path | None) -> Iterator[tuple[DaemonConfig, Store]]:
    """The line's config and store; a refused operation exits 2 with its reason, having changed nothing."""
    config = load_or_exit(line, config_file)
    try:
        with Store.open(config.store_url) as store:
            yield config, store
    except (StoreError, ValueError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@review_app.callback(invoke_without_command=True)
def review(
    ctx: typer.Context,
    line: Line = 3,
    web: Annotated[
        bool, typer.Option("--web", help="Serve the plant's review station instead: every line of the store.")
    ] = False,
    host: Annotated[
        str, typer.Option(help="--web: address to bind (loopback by default; any other needs `accounts add`).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="--web: port (0 picks a free one).")] = 0,
    certfile: Annotated[
        Path | None, typer.Option(help="--web: serve HTTPS directly with this certificate (PEM; with --keyfile).")
    ] = None,
    keyfile: Annotated[Path | None, typer.Option(help="--web: the certificate's private key (PEM).")] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="--web: the TLS proxy's addresses (comma-separated, networks allowed) whose X-Forwarded-Proto and "
            "X-Forwarded-For are believed; none by default."
        ),
    ] = None,
    operator: Operator = None,
    label: LabelFilter = None,
    camera: Camera = None,
    since: Since = None,
    limit: Limit = 50,
    config_file: ConfigFile = None,
) -> None:
    """Go through the queue one item at a time in the terminal, or serve every line's queue on a page with --web.

    The station's store is the one of --line's config; with a shared store (PostgreSQL) it shows every line
    that reports into it. Off loopback, or once the store has accounts, the page asks for a login.
    """
    if ctx.invoked_subcommand is not None:
        if any(ctx.params[option.name] != option.default for option in ctx.command.params if option.name):
            sub = ctx.invoked_subcommand
            raise typer.BadParameter(f"options go after the subcommand: `review {sub} --line N ...`, not before")
        return
    name = _operator(operator)
    with _opened(line, config_file) as (config, store):
        if not web:
            load = _loader(store, line, label, camera, since, limit)
            interactive(store, config.transport_settings(), line, name, load)
            return
        from daemon.review.server import Listen

        queue = partial(review_queue, store, **_filters(label, camera, since, limit))
        listen = Listen(host, port, certfile, keyfile, forwarded_allow_ips)
        _serve(store, partial(load_config, config_file=config_file), line, name, listen, queue)


def _serve(store: Store, configs: ConfigLoader, line: int, name: str, listen: Listen, queue: LineQueue) -> None:
    """Run the review station until Ctrl-C or SIGTERM; exit 2 with the reason when it may not or cannot start."""
    from daemon.review.accounts import StationRefused
    from daemon.review.app import station_app
    from daemon.review.server import bind, make_server

    try:
        app = station_app(store, configs, line, name, listen.host, queue, behind_proxy=listen.behind_proxy)
        server = make_server(app, listen)
        sock = bind(listen)
    except (StationRefused, OSError, ValueError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    lines = ", ".join(map(str, app.state.station.line_numbers()))
    shown = f"[{listen.host}]" if ":" in listen.host else listen.host
    gate = app.state.gate
    who = "login required" if gate.login_required() else f"no login (loopback, no accounts): marks by {name}"
    url = f"{listen.scheme}://{shown}:{sock.getsockname()[1]}/"
    typer.echo(f"review station, lines {lines}: {url}  {who}  (Ctrl-C stops it)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # uvicorn stops, re-raises it: exit 0 like Ctrl-C
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


@review_app.command("list")
def list_command(
    line: Line = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    label: LabelFilter = None,
    camera: Camera = None,
    since: Since = None,
    limit: Limit = 50,
    config_file: ConfigFile = None,
) -> None:
    """Print the review queue, the frames that teach the scorer most first."""
    with _opened(line, config_file) as (_, store):
        items = _loader(store, line, label, camera, since, limit)()
    if as_json:
        typer.echo(json.dumps([item.as_dict() for item in items], indent=2))
        return
    table = Table(title=f"Line {line}: {len(items)} to review")
    for column in ("frame", "camera", "label", "score", "band", "nearest defect", "picture"):
        table.add_column(column)
    for item in items:
        band = "-" if item.band is None else f"{item.band[0]:.4f} .. {item.band[1]:.4f}"
        row = (item.frame_id, item.camera, item.label, f"{item.score:.4f}", band, item.nearest_defect or "-")
        table.add_row(*row, item.artifact_path or "-")
    Console(width=200).print(table)
    with _opened(line, config_file) as (_, store):
        failed = failed_corrections(store, line)
    for correction in failed:
        typer.secho(
            f"correction {correction.id} by {correction.operator} ({correction.frame_id} marked {correction.verdict}) "
            f"could not act: {correction.audit['error']}",
            fg=typer.colors.YELLOW,
        )


@review_app.command("mark")
def mark_command(
    frame_id: Annotated[str, typer.Argument(help="The frame's id, as `review list` shows it.")],
    verdict: Annotated[str, typer.Argument(help="ok or defect.")],
    line: Line = 3,
    label: Annotated[str | None, typer.Option(help="defect: the defect's name (e.g. scratch).")] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the correction.")] = None,
    operator: Operator = None,
    config_file: ConfigFile = None,
) -> None:
    """Correct a decision: the store keeps it at once, a running daemon applies it at once."""
    name = _operator(operator)
    with _opened(line, config_file) as (config, store):
        result = mark(store, config.transport_settings(), line, frame_id, verdict, name, label=label, note=note)
    typer.echo(describe(result))


@review_app.command("undo")
def undo_command(
    correction_id: Annotated[int, typer.Argument(help="The correction's number, as `review mark` printed it.")],
    line: Line = 3,
    operator: Operator = None,
    config_file: ConfigFile = None,
) -> None:
    """Undo a correction; a running daemon reverts what it changed at once."""
    name = _operator(operator)
    with _opened(line, config_file) as (config, store):
        result = undo(store, config.transport_settings(), line, correction_id, name)
    typer.echo(describe(result))
