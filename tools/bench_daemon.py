#!/usr/bin/env python3
"""Time the real daemon end to end: camera send to decision received (p50/p99) at a paced rate, and frames/s.

Starts ``musc-daemon start`` in a temporary data folder on a free port block, fills the window and calibrates
the band (untimed warm-up), then runs two timed passes over ZeroMQ on loopback:
- latency: ``--frames`` frames at ``--rate`` Hz, each stamped with its send time; latency is the decision's
  arrival time minus that stamp (one machine, one clock);
- throughput: ``--frames`` frames as fast as the daemon takes them (the PUSH socket blocks when it lags);
  frames/s is decisions received per second between the first and the last decision.
Every frame must be answered with a decision: missing decisions or refusals make the exit status 1.
Examples: 2 CPU cores: ``--device cpu`` (the defaults: efficientnet_lite0 at 256 px, window 64, 2 Hz);
a GPU: ``--device cuda``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import cpu_name
from line_harness import LINE, HarnessError, start_daemon, summary_ms, wait_ready

from musc_online.client import AnswerCollector, ControlClient, FrameSender
from musc_online.synthetic import camera_frames
from musc_online.transport import TransportSettings, free_port_block

CAMERA = "bench"


def send(sender: FrameSender, frames: Iterator[np.ndarray], frame_ids: list[str], rate: float = 0.0) -> None:
    """Send one frame per id, stamped with its send time; ``rate`` > 0 paces them, 0 sends as fast as taken."""
    period = 1.0 / rate if rate > 0 else 0.0
    started = time.monotonic()
    for i, frame_id in enumerate(frame_ids):
        if period:
            time.sleep(max(0.0, started + i * period - time.monotonic()))
        sender.send(next(frames), camera=CAMERA, frame_id=frame_id, encoding="jpeg", timestamp=time.time())


def daemon_settings(args: argparse.Namespace) -> dict[str, str]:
    """The daemon's MUSC_* settings for this run. No age budget: the throughput pass relies on backpressure."""
    return {
        "MUSC_MODEL__BACKBONE": args.backbone,
        "MUSC_MODEL__IMAGE_SIZE": str(args.size),
        "MUSC_MODEL__DEVICE": args.device,
        "MUSC_ONLINE__WINDOW": str(args.window),
        "MUSC_PIPELINE__MICRO_BATCH": str(args.micro_batch),
        "MUSC_PIPELINE__MAX_AGE_MS": "0",
    }


def settled_counts(control: ControlClient, expected: int, timeout_s: float) -> dict[str, int]:
    """The store's counts once every frame sent is recorded (the recorder writes off the hot path)."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = control.call("status", timeout_ms=30_000)["result"]["counts"]
        if (counts["received"] >= expected and counts["pending"] == 0) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def bench(args: argparse.Namespace, data_dir: Path, log_path: Path) -> dict[str, Any]:
    """Start the daemon, warm it up, time both passes, shut it down; returns the figures."""
    base_port = free_port_block(LINE)
    settings = TransportSettings.for_line(LINE, base_port)
    frames = itertools.cycle(
        list(itertools.islice(camera_frames(args.source, defect_rate=0.0, size=args.image_px), 32))
    )
    load_average = os.getloadavg()
    started = time.monotonic()
    process = start_daemon(data_dir, base_port, log_path, daemon_settings(args))
    try:
        with ControlClient(settings) as control:
            wait_ready(process, control, args.timeout)
            startup_s = time.monotonic() - started
            print(f"daemon ready in {startup_s:.1f} s", file=sys.stderr)
            decisions = AnswerCollector(settings, LINE)
            sent: list[str] = []
            with FrameSender(settings, line=LINE, send_timeout_ms=int(1e3 * args.timeout)) as sender:

                def run(prefix: str, count: int, rate: float = 0.0) -> list[str]:
                    """Send ``count`` frames named ``prefix-N`` and wait for their answers."""
                    ids = [f"{prefix}-{i:06d}" for i in range(count)]
                    sent.extend(ids)
                    send(sender, frames, ids, rate)
                    missing = decisions.wait_for(ids, args.timeout)
                    if missing:
                        raise HarnessError(f"{len(missing)} of {count} {prefix} frames got no answer")
                    return ids

                # Warm-up: fill the window, then go on until the band is calibrated (decisions stop being provisional).
                warmup = run("warmup", args.window)
                while decisions.arrived[warmup[-1]][1].get("provisional", True):
                    if len(warmup) >= max(8 * args.window, 256):
                        raise HarnessError(f"decisions were still provisional after {len(warmup)} warm-up frames")
                    warmup += run(f"warmup{len(warmup)}", args.micro_batch)
                print(f"warmed up with {len(warmup)} frames; latency pass at {args.rate} Hz", file=sys.stderr)

                paced = run("paced", args.frames, args.rate)
                print("throughput pass", file=sys.stderr)
                flat_out = run("flat-out", args.frames)
            decisions.close()
            answered = [decisions.arrived[i][1] for i in sent if i in decisions.arrived]
            refused = [f"{m['frame_id']}: {m.get('reason')}" for m in answered if m["topic"].endswith(".refusal")]
            counts = settled_counts(control, len(sent), args.timeout)
            control.call("shutdown", timeout_ms=30_000)
        exit_code = process.wait(timeout=args.timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    answered = [decisions.arrived[i] for i in paced if decisions.arrived[i][1]["topic"].endswith(".decision")]
    arrivals = sorted(decisions.arrived[i][0] for i in flat_out)
    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    return {
        "machine": {
            "cpu": cpu_name(),
            "cpu_cores": len(os.sched_getaffinity(0)),
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "daemon_torch_threads": torch.get_num_threads(),  # the daemon sets none: torch's default, as here
            "torch": torch.__version__,
            "load_average_at_start": list(load_average),
        },
        "settings": {
            "backbone": args.backbone,
            "image_size": args.size,
            "window": args.window,
            "micro_batch": args.micro_batch,
            "device": args.device,
            "source": args.source,
            "image_px": args.image_px,
            "encoding": "jpeg",
            "rate_hz": args.rate,
            "frames_per_pass": args.frames,
            "warmup_frames": len(warmup),
        },
        "startup_seconds": startup_s,
        "latency_ms": summary_ms([arrived - message["timestamp"] for arrived, message in answered]),
        "daemon_latency_ms": summary_ms([1e-3 * message["latency_ms"] for _, message in answered]),
        "frames_per_second": (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]),
        "refused": len(refused),
        "refusals": refused[:10],
        "counts": counts,
        "daemon_exit_code": exit_code,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=256, help="model input size in pixels")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=4, help="frames scored together (the daemon's default)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--frames", type=int, default=200, help="frames in each timed pass")
    parser.add_argument("--rate", type=float, default=2.0, help="frames/s of the latency pass, well below capacity")
    parser.add_argument("--source", default="synthetic", help="'synthetic' or a folder of images")
    parser.add_argument("--image-px", type=int, default=256, help="side of the synthetic frames in pixels")
    parser.add_argument("--timeout", type=float, default=300, help="seconds without progress before giving up")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.frames < 2 or args.window < 1 or args.micro_batch < 1 or args.rate <= 0:
        parser.error("--frames must be at least 2, --window and --micro-batch at least 1, --rate above 0")

    data_dir = Path(tempfile.mkdtemp(prefix="bench_daemon_"))
    log_path = data_dir / "daemon.log"
    try:
        figures = bench(args, data_dir, log_path)
    except (HarnessError, TimeoutError, subprocess.TimeoutExpired) as error:
        print(f"error: {error}\ndaemon log: {log_path}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    counts = figures["counts"]
    if figures["refused"] or figures["daemon_exit_code"] != 0 or counts["received"] != counts["decided"]:
        print(f"error: refusals or unrecorded frames or a bad exit\ndaemon log: {log_path}", file=sys.stderr)
        return 1
    shutil.rmtree(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
