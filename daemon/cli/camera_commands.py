"""``musc-online camera``: grab frames from a real (or stand-in) camera and push them to a line's daemon."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import time
from collections import deque
from typing import Annotated

import typer

from daemon.cli.common import ConfigFile, Line, load_or_exit
from daemon.config import DaemonConfig
from daemon.outputs.line_outputs import opcua_endpoint
from daemon.outputs.plc_trigger import PlcTrigger
from musc_online.cameras import CameraError, CameraRunner, CameraSource, CameraUnavailable, open_source
from musc_online.client import FrameSender

log = logging.getLogger("musc.camera")


def camera_command(
    line: Line = 3,
    source: Annotated[str | None, typer.Option(help="Camera URI; default: the line's camera.source.")] = None,
    count: Annotated[int, typer.Option(help="Frames to send, then stop (0: until Ctrl-C or SIGTERM).")] = 0,
    config_file: ConfigFile = None,
) -> None:
    """Grab frames from a camera and push them to a line's daemon, reopening the camera whenever it is lost.

    Each frame carries the camera's id, a part id (the PLC's TriggerPartId, else CAMERA-START-SEQUENCE) and its
    exposure timestamp. With camera.trigger = software it captures on the PLC's OPC UA Trigger. Prints a
    JSON summary (frames grabbed, sent, skipped for newer ones, camera errors and reopens) when it stops.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_or_exit(line, config_file)
    settings = config.camera if source is None else dataclasses.replace(config.camera, source=source)
    try:
        camera = open_source(settings)
    except CameraUnavailable as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    runner = CameraRunner(
        camera,
        grab_timeout_s=settings.grab_timeout_s,
        reopen_min_s=settings.reopen_min_s,
        reopen_max_s=settings.reopen_max_s,
        wait_for_trigger=settings.trigger == "software",
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stop())
    plc_parts: deque[str] = deque()  # part ids the PLC named with its triggers, in order
    plc = _plc_trigger(config, line, camera, plc_parts) if settings.trigger == "software" else None
    sent, started = 0, int(time.time())
    transport = config.transport_settings()
    try:
        with FrameSender(transport, line=line, keys=config.transport.client_keys()) as sender:
            while count == 0 or sent < count:
                grab = runner.next_grab()
                if grab is None:
                    break
                name = settings.name or camera.camera_id
                part = (plc_parts.popleft() if plc_parts else "") or f"{name}-{started}-{sent:06d}"
                image, stamp = grab.image, grab.timestamp
                sender.send(image, camera=name, frame_id=part, encoding=settings.encoding, timestamp=stamp)
                sent += 1
    except (CameraUnavailable, ValueError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    finally:
        if plc is not None:
            plc.stop()
        runner.close()
        summary = {"source": settings.source, "camera": settings.name or camera.camera_id, "sent": sent}
        typer.echo(json.dumps({**summary, **dataclasses.asdict(runner.counts)}))
    log.info("sent %d frames to %s from %s", sent, transport.frames_endpoint, settings.source)


def _plc_trigger(config: DaemonConfig, line: int, camera: CameraSource, parts: deque[str]) -> PlcTrigger:
    """Capture on the PLC's Trigger through the line's OPC UA server, noting the part id the PLC gave."""
    if not config.opcua.enabled:
        typer.secho("error: camera.trigger = software needs [opcua] enabled (the PLC's Trigger)", err=True)
        raise typer.Exit(2)

    def on_trigger(part: str) -> None:
        parts.append(part)
        try:
            camera.trigger()
        except CameraError as error:  # the camera is being reopened: the PLC sees Verdict "timeout"
            parts.pop()
            log.warning("trigger for part %r not taken: %s", part, error)

    plc = PlcTrigger(opcua_endpoint(config), line, on_trigger)
    plc.start()
    return plc
