"""``musc-online plc``: play the PLC on a line's OPC UA server (docs/plc.md), to try the handshake by hand."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from daemon.cli.common import ConfigFile, Line, load_or_exit
from daemon.outputs.line_outputs import opcua_endpoint
from daemon.outputs.plc_client import PlcClient


def plc_command(
    line: Line = 3,
    trigger: Annotated[
        str | None, typer.Option(help="Run one handshake first: Trigger with this part id ('' for none), then Ack.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server and for ResultReady.")] = 30.0,
    config_file: ConfigFile = None,
) -> None:
    """Print the line's OPC UA nodes (last result, counters, band, state, handshake) as JSON."""
    config = load_or_exit(line, config_file)
    endpoint = opcua_endpoint(config)
    try:
        plc = PlcClient(endpoint, line, timeout)
    except TimeoutError as error:
        typer.secho(f"error: {error} (is [opcua] enabled for line {line}?)", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    try:
        if trigger is not None:
            plc.handshake(trigger, timeout)
        values = plc.values()
        if trigger is not None:
            plc.acknowledge(timeout)
    except TimeoutError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    finally:
        plc.close()
    typer.echo(json.dumps({"endpoint": endpoint, **values}, indent=2))
