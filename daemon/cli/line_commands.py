"""Line tools of ``musc-online``: ``publish`` (a camera stand-in), ``status``, ``demo`` and ``band``."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from daemon.cli.common import ConfigFile, Line, load_or_exit
from daemon.store import Store
from musc_online.client import ControlClient, DecisionSubscriber, FrameSender
from musc_online.datasets import DatasetError, images_in
from musc_online.protocol import encode_image
from musc_online.roi import care_text
from musc_online.synthetic import camera_frames
from musc_online.transport import accepts_connections

DEMO_JUDGES = 32  # enough known-good scores to calibrate the band at the default calibration_scores
DEMO_IMAGE_SIZE = 256  # at efficientnet_lite0's own 320 px, 2 CPU cores score no seed fast enough for a 60-frame demo
DEMO_SEED = 1000  # the judges' parts differ from the camera's (seed 0)
DEMO_ENCODING = "jpeg"  # how the demo's camera sends frames, and so how its judges are stored


def publish_command(
    line: Line = 3,
    source: Annotated[str, typer.Option(help="A folder of images, or 'synthetic'.")] = "synthetic",
    rate: Annotated[float, typer.Option(help="Frames per second (0: as fast as the daemon takes them).")] = 5.0,
    count: Annotated[int, typer.Option(help="Frames to send.")] = 100,
    camera: Annotated[str, typer.Option(help="Camera name in the frame headers.")] = "cam-1",
    encoding: Annotated[str, typer.Option(help="jpeg, png or raw.")] = "jpeg",
    defect_rate: Annotated[float, typer.Option(help="Synthetic source: share of parts with a defect.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Synthetic source: random seed.")] = 0,
    config_file: ConfigFile = None,
) -> None:
    """Push frames to a line's daemon like a camera would."""
    config = load_or_exit(line, config_file)
    settings = config.transport_settings()
    try:
        frames = camera_frames(source, seed, defect_rate)
        period = 1.0 / rate if rate > 0 else 0.0
        started = time.monotonic()
        with FrameSender(settings, line=line, keys=config.transport.client_keys()) as sender:
            for i in range(count):
                sender.send(next(frames), camera=camera, frame_id=f"{camera}-{int(started)}-{i:06d}", encoding=encoding)
                if period:
                    time.sleep(max(0.0, started + (i + 1) * period - time.monotonic()))
    except (DatasetError, ValueError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(f"sent {count} frames to {settings.frames_endpoint} from {source}", err=True)


def _status_table(status: dict) -> Table:
    counts, scorer = status["counts"], status["scorer"]
    table = Table(
        title=f"Line {status['line']}" + (" (daemon not running: store only)" if not status.get("live") else "")
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    refused = ", ".join(f"{code} {n}" for code, n in counts.get("refused_by_code", {}).items()) or "-"
    rows = [
        ("frames received", counts["received"]),
        ("  decided", counts["decided"]),
        ("  refused", counts["refused"]),
        ("  pending", counts.get("pending", 0)),
        ("refused by code", refused),
        ("decisions ok / unsure / defect", f"{counts['ok']} / {counts['unsure']} / {counts['defect']}"),
        ("corrections pending", counts["corrections_pending"]),
        ("corrections that could not act", counts.get("corrections_failed", 0)),
    ]
    if scorer:
        band = scorer["band"]
        queues = ", ".join(f"{name} {q['depth']}" for name, q in status["queues"].items())
        budget = f"{status['max_age_ms']:.0f} ms" if status["max_age_ms"] else "none"
        rows += [
            ("window", f"{scorer['window']} / {scorer['window_capacity']}"),
            ("judges", _judges_text(scorer)),
            ("known defects", scorer["known_defects"]),
            ("band low / high", _band_text(band)),
            ("expected per 1,000 good parts", _expected_text(scorer.get("expected_per_1000") or {})),
            ("flagged per 1,000 parts (final)", _flagged_text(scorer.get("flagged_per_1000_final"))),
            ("judges' band low / high", _judges_band_text(scorer.get("judge_band"))),
            ("corrections moving the band", scorer["corrections_moving_band"]),
            ("age budget / scoring takes", f"{budget} / {status['expected_scoring_ms']:.0f} ms a frame"),
            ("queues", queues),
            ("memory bounds", _bounds_text(status)),
            ("paused", status["paused"]),
            ("care area", care_text(status.get("care_area"))),
        ]
        rows += [("band change", event["message"]) for event in status.get("band_events", [])[:1]]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _bounds_text(status: dict) -> str:
    """The queues of frames, held and bound in MiB, what ZeroMQ may hold per camera, and all frames at most."""
    mib = 1 << 20
    held = [
        f"{name} {q['bytes'] / mib:.1f} / {q['max_bytes'] / mib:.0f} MiB"
        for name, q in status["queues"].items()
        if q.get("max_bytes")
    ]
    bounds = status.get("memory_bounds")
    if bounds:
        held += [
            f"ZeroMQ {bounds['receive_per_camera'] / mib:.0f} MiB per camera",
            f"all frames at most {bounds['total'] / mib:.0f} MiB (one camera)",
        ]
    return ", ".join(held) or "-"


def _band_text(band: dict) -> str:
    if band["low"] is None or band["source"] == "unset":
        return "not calibrated yet (decisions unsure)"
    return f"{band['low']:.4f} / {band['high']:.4f} ({band['source']})"


def _judges_text(scorer: dict) -> str:
    """Judges as parts, and as bank items where turned copies (``judge_turns``) make more."""
    parts, items = scorer.get("judge_parts", scorer["judges"]), scorer["judges"]
    return str(items) if parts == items else f"{parts} parts ({items} with their turned copies)"


def _judges_band_text(band: dict | None) -> str:
    if band is None or band["low"] is None or band["source"] == "unset":
        return "none yet (too few judges)"
    return _band_text(band)


def _expected_text(rates: dict) -> str:
    """Good parts per 1,000 the band flags and decides defective, as calibrated (and as seen among known-good)."""
    if rates.get("flagged") is None:
        return "-"
    seen = f"{rates['observed_flagged']:.0f} / {rates['observed_false_alarms']:.0f}"
    return f"{rates['flagged']:.1f} flagged / {rates['false_alarms']:.1f} false alarms (seen: {seen})"


def _flagged_text(per_1000: float | None) -> str:
    """What the line flags (unsure or defect) among its final decisions: good parts and defects alike."""
    return "-" if per_1000 is None else f"{per_1000:.0f} (good parts and defects)"


def line_status(line: int, config_file: Path | None = None, timeout_ms: int = 2000) -> dict:
    """The running daemon's status over the control socket, or the store's counts when it does not answer."""
    config = load_or_exit(line, config_file)
    settings = config.transport_settings()
    try:
        if accepts_connections(settings.control_endpoint):
            with ControlClient(settings, keys=config.transport.client_keys()) as control:
                reply = control.call("status", timeout_ms=timeout_ms)
            if reply.get("ok"):
                return {**reply["result"], "live": True}
    except TimeoutError:
        pass
    with Store.open(config.store_url) as store:
        return {"line": line, "counts": dict(store.counts(line)), "scorer": None, "live": False}


def status_command(
    line: Line = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config_file: ConfigFile = None,
) -> None:
    """Show a line's counts (received = decided + refused + pending), window, judges and band."""
    status = line_status(line, config_file)
    if as_json:
        typer.echo(json.dumps(status, indent=2))
    else:
        Console().print(_status_table(status))


def demo_command(
    line: Line = 3,
    source: Annotated[str, typer.Option(help="A folder of images, or 'synthetic'.")] = "synthetic",
    count: Annotated[int, typer.Option(help="Frames the camera sends.")] = 60,
    rate: Annotated[float, typer.Option(help="Camera frames per second.")] = 3.0,
    config_file: ConfigFile = None,
) -> None:
    """Start the line daemon and a camera, print every decision as it comes, then stop the daemon cleanly.

    So that its decisions are calibrated and final within the run, the demo seeds the line with DEMO_JUDGES
    synthetic good parts (in the line's folder) and uses a 16-frame window with 8 judges per frame: the band
    calibrates from the judges once the window is full or 32 frames have passed and the line has scored them
    (final from about the 30th frame on 2 quiet CPU cores). It scores at DEMO_IMAGE_SIZE px, below the backbone's own
    size, so that the seeds are scored within its 60 frames on a CPU.
    MUSC_* variables you set yourself take precedence.
    """
    config = load_or_exit(line, config_file)
    command = [sys.executable, "-m", "daemon.cli.musc_daemon", "start", "--line", str(line), "--no-log-json"]
    if config_file:
        command += ["--config", str(config_file)]
    config.line_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.line_dir / "daemon.log"
    judges = _demo_judges(config.line_dir / "demo-judges")
    demo = {
        "MUSC_ONLINE__JUDGES_DIR": str(judges),
        "MUSC_ONLINE__WINDOW": "16",
        "MUSC_ONLINE__JUDGES_PER_FRAME": "8",
        "MUSC_MODEL__IMAGE_SIZE": str(DEMO_IMAGE_SIZE),
    }
    settings = {**demo, **os.environ}
    typer.echo(
        f"starting the line {line} daemon ({config.model.backbone}, {settings['MUSC_MODEL__IMAGE_SIZE']} px, "
        f"{DEMO_JUDGES} good parts as judges); log: {log_path}"
    )
    with open(log_path, "ab") as log_file:
        daemon = subprocess.Popen(
            command, env={**settings, "PYTHONUNBUFFERED": "1"}, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        keys = config.transport.client_keys()
        with ControlClient(config.transport_settings(), keys=keys) as control:
            deadline = time.monotonic() + 120
            while True:
                try:
                    control.call("status", timeout_ms=1000)
                    break
                except TimeoutError:
                    if daemon.poll() is not None or time.monotonic() > deadline:
                        typer.secho(f"error: the daemon did not start; its log: {log_path}", fg="red", err=True)
                        raise typer.Exit(1) from None
            with DecisionSubscriber(config.transport_settings(), line, keys=keys) as decisions:
                time.sleep(0.3)  # let the subscription reach the daemon before the first frame
                typer.echo(f"camera: {count} {source} frames at {rate} frames/s; decisions as they arrive:")
                camera = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "daemon.cli.musc_online",
                        "publish",
                        "--line",
                        str(line),
                        "--source",
                        source,
                        "--count",
                        str(count),
                        "--rate",
                        str(rate),
                        "--encoding",
                        DEMO_ENCODING,
                    ]
                    + (["--config", str(config_file)] if config_file else [])
                )
                for _ in range(count):
                    message = decisions.receive(timeout_ms=60_000)
                    if message is None:
                        break
                    _print_decision(message)
                camera.wait()
            Console().print(_status_table({**control.call("status")["result"], "live": True}))
            control.call("shutdown")
        daemon.wait(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=30)


def _demo_judges(folder: Path) -> Path:
    """A folder of DEMO_JUDGES synthetic good parts (made once), to seed the demo line's judges.

    Each is stored as the demo's camera sends a frame (DEMO_ENCODING), as a plant's judges are frames its camera
    took: lossless judges are smoother than the JPEG frames they judge, and 6 of the demo's 54 good parts went to
    a person, 4 of them on the judges' opinion alone (1 with judges stored as sent; ``docs/benchmarks.md``)."""
    suffix = "jpg" if DEMO_ENCODING == "jpeg" else DEMO_ENCODING
    paths = [folder / f"good-{i:03d}.{suffix}" for i in range(DEMO_JUDGES)]
    if not all(path.is_file() for path in paths):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in images_in(folder):  # an earlier demo's judges, stored otherwise
            stale.unlink()
        parts = camera_frames("synthetic", seed=DEMO_SEED, defect_rate=0.0)
        for path in paths:
            path.write_bytes(encode_image(next(parts), DEMO_ENCODING))
    return folder


def _print_decision(message: dict) -> None:
    if message.get("topic", "").endswith("refusal"):
        typer.secho(f"{message.get('frame_id')}: REFUSED ({message.get('code')}: {message.get('reason')})", fg="red")
        return
    colour = {"ok": "green", "unsure": "yellow", "defect": "red"}[message["label"]]
    extra = " (provisional)" if message.get("provisional") else ""
    nearest = message.get("nearest_defect")
    if nearest:
        extra += f", looks like known defect '{nearest['label']}'"
    typer.secho(
        f"{message['frame_id']}: {message['label']:<6} score {message['score']:.4f}  "
        f"{message['latency_ms']:.0f} ms{extra}",
        fg=colour,
    )


def running_line(line: int, config_file: Path | None, command: str, **args: object) -> object:
    """A control command's result from the running line, or exit 2 saying why (not running, or refused)."""
    config = load_or_exit(line, config_file)
    settings = config.transport_settings()
    try:
        if not accepts_connections(settings.control_endpoint):
            raise TimeoutError
        with ControlClient(settings, keys=config.transport.client_keys()) as control:
            control.call("status", timeout_ms=2000)  # is it there at all? (a slow command may take minutes)
            reply = control.call(command, timeout_ms=120_000, **args)
    except TimeoutError:
        hint = f"start it with 'musc-daemon start --line {line}'"
        if accepts_connections(settings.control_endpoint):  # listening, yet silent: busy, or CURVE refused us
            hint = "it listens but is silent: a line with CURVE keys answers operator keys only ([transport] "
            hint += "curve_client_secret)"
        typer.secho(f"error: the line {line} daemon does not answer; {hint}", fg="red", err=True)
        raise typer.Exit(2) from None
    if not reply.get("ok"):
        typer.secho(f"error: {reply.get('error')}", fg="red", err=True)
        raise typer.Exit(2)
    return reply["result"]


band_app = typer.Typer(
    help="The running line's decision band: show it, set it by hand, or recalibrate it (e.g. after a product "
    "change). Changes are recorded as events and shown by `musc-online status`.",
    no_args_is_help=True,
)


def _print_band(result: dict) -> None:
    before, after = result["before"], result["band"]
    if before != after:
        typer.echo(f"was {_band_text(before)}")
    typer.echo(f"band {_band_text(after)}")


@band_app.command("show")
def band_show(line: Line = 3, config_file: ConfigFile = None) -> None:
    """Print the band the line decides with: below low ok, from high defect, unsure between."""
    _print_band(running_line(line, config_file, "band", action="show"))


@band_app.command("set")
def band_set(
    low: Annotated[float, typer.Argument(help="Scores below this are ok.")],
    high: Annotated[float, typer.Argument(help="Scores from this up are defects (at least LOW).")],
    line: Line = 3,
    operator: Annotated[str | None, typer.Option(help="Who changes it (default: $USER).")] = None,
    config_file: ConfigFile = None,
) -> None:
    """Set the band by hand; operators' corrections still adjust it."""
    args = {"action": "set", "low": low, "high": high, "operator": operator or _user()}
    _print_band(running_line(line, config_file, "band", **args))


@band_app.command("recalibrate")
def band_recalibrate(
    line: Line = 3,
    operator: Annotated[str | None, typer.Option(help="Who asks for it (default: $USER).")] = None,
    config_file: ConfigFile = None,
) -> None:
    """Calibrate the band again from the line's judges and voters (after a product change, or new judges)."""
    _print_band(running_line(line, config_file, "band", action="recalibrate", operator=operator or _user()))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
