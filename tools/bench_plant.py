#!/usr/bin/env python3
"""A plant on one PostgreSQL: N line daemons write to one database while corrections reach them through it.

Creates a fresh database on the server at ``--store-url`` (an admin URL; the database is dropped at the end),
starts ``musc-daemon start --line 1 .. N`` on it, each with its own data folder and port block, warms every
line up (window full, band calibrated), then for ``--seconds`` feeds every line synthetic camera frames as fast
as it takes them (``--in-flight`` unanswered at most) while a plant operator writes ``--corrections`` verdicts
straight into the store (no control call) on frames the lines decided. Figures:
- frames/s per line and in total (decisions received in the timed pass);
- store write latency: seconds per grouped frame-record transaction, from the daemons' own
  ``musc_store_write_seconds`` histograms (quantiles interpolated within buckets, as Prometheus does);
- correction to effect: from a verdict's ``created_at`` in the store to its ``applied_at`` by the line's
  scorer, which found it by polling the store (``[store] poll_s``).
Example (2 CPU cores): ``python tools/bench_plant.py --store-url postgresql+psycopg://musc:musc@127.0.0.1/postgres``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_common import cpu_name
from line_harness import HarnessError, start_daemon, summary_ms, wait_ready
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from daemon.store import Store, StoreError, scratch_database
from musc_online.client import AnswerCollector, ControlClient, FrameSender
from musc_online.synthetic import camera_frames
from musc_online.transport import TransportSettings, free_port_block, line_ports


class Line:
    """One line daemon of the plant, its camera and what it answered."""

    def __init__(self, number: int, args: argparse.Namespace, store_url: str, folder: Path) -> None:
        self.number = number
        self.base_port = free_port_block(number)
        self.settings = TransportSettings.for_line(number, self.base_port)
        self.http_port = line_ports(number, self.base_port)[3]
        self.log_path = folder / f"line-{number}.log"
        env = {
            "MUSC_STORE__URL": store_url,
            "MUSC_MODEL__BACKBONE": args.backbone,
            "MUSC_MODEL__IMAGE_SIZE": str(args.size),
            "MUSC_MODEL__DEVICE": "cpu",
            "MUSC_ONLINE__WINDOW": str(args.window),
            "MUSC_PIPELINE__MAX_AGE_MS": "0",  # backpressure, not shedding: every frame is decided
            "OMP_NUM_THREADS": str(args.threads),  # N daemons share the cores
        }
        self.process = start_daemon(folder / f"line-{number}", self.base_port, self.log_path, env, line=number)
        self.frames = camera_frames("synthetic", seed=number, defect_rate=args.defect_rate, size=args.image_px)
        self.answers: AnswerCollector | None = None
        self.sent: list[str] = []

    def send(self, sender: FrameSender, prefix: str, count: int) -> list[str]:
        """Send ``count`` frames named ``prefix-N`` as fast as the line takes them."""
        ids = [f"{prefix}-{i:06d}" for i in range(count)]
        for frame_id in ids:
            sender.send(next(self.frames), camera="plant", frame_id=frame_id, encoding="jpeg", timestamp=time.time())
        self.sent.extend(ids)
        return ids

    def warm_up(self, window: int, timeout_s: float) -> int:
        """Fill the window and go on until decisions stop being provisional; returns the frames it took."""
        with FrameSender(self.settings, line=self.number, send_timeout_ms=int(1e3 * timeout_s)) as sender:
            batch = self.send(sender, "warmup", window)
            total = len(batch)
            while True:
                if self.answers.wait_for(batch, timeout_s):
                    raise HarnessError(f"line {self.number} stopped answering during warm-up")
                if not self.answers.arrived[batch[-1]][1].get("provisional", True):
                    return total
                if total > max(8 * window, 256):
                    raise HarnessError(f"line {self.number} was still provisional after {total} frames")
                batch = self.send(sender, f"warmup{total}", 4)
                total += len(batch)

    def feed(self, until: float, in_flight: int, timeout_s: float) -> None:
        """Send frames until the monotonic time ``until``, never more than ``in_flight`` unanswered (as fast as
        the line takes them, without a backlog to drain), then wait for the last answers (a thread's body)."""
        with FrameSender(self.settings, line=self.number, send_timeout_ms=int(1e3 * timeout_s)) as sender:
            sent: list[str] = []
            while time.monotonic() < until:
                if sum(frame_id not in self.answers.arrived for frame_id in sent[-2 * in_flight :]) < in_flight:
                    sent += self.send(sender, f"timed{len(sent)}", 1)
                else:
                    time.sleep(0.005)
            self.answers.wait_for(sent, timeout_s)

    def store_write_buckets(self) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of the line's store write histogram, from its /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=10) as reply:
            exposition = reply.read().decode()
        for family in text_string_to_metric_families(exposition):
            if family.name == "musc_store_write_seconds":
                return [(float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")]
        raise HarnessError(f"line {self.number} exports no musc_store_write_seconds histogram")


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The q-quantile of a cumulative histogram, linear within the bucket it falls in (Prometheus' rule)."""
    buckets = sorted(buckets)
    total = buckets[-1][1]
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def operator(store: Store, lines: list[Line], count: int, until: float) -> list[int]:
    """Write ``count`` verdicts straight into the store, spread over the timed pass, each on the latest frame a
    line decided (still among the scorer's recent frames); returns the corrections' ids."""
    rng = random.Random(0)
    made: list[int] = []
    period = max(0.0, until - time.monotonic()) / max(count, 1)
    while len(made) < count and time.monotonic() < until + 30:
        time.sleep(period)
        line = rng.choice(lines)
        decided = [
            (frame_id, message)
            for frame_id, (_, message) in list(line.answers.arrived.items())
            if frame_id.startswith("timed") and message["topic"].endswith(".decision")
        ]
        for frame_id, message in reversed(decided[-20:]):
            verdict = "defect" if message["label"] == "ok" else "ok"
            try:  # the recorder may not have written the decision yet, or it was corrected before
                made.append(store.add_correction(line.number, frame_id, verdict, "bench", message["label"]))
                break
            except StoreError:
                continue
    return made


def bench(args: argparse.Namespace, store_url: str, folder: Path) -> dict[str, Any]:
    """Start the lines, warm them up, run the timed pass with the operator, shut them down; returns the figures."""
    load_average = os.getloadavg()
    lines = [Line(n, args, store_url, folder) for n in range(1, args.lines + 1)]
    store = Store.open(store_url)
    try:
        for line in lines:
            with ControlClient(line.settings) as control:
                wait_ready(line.process, control, args.timeout)
            line.answers = AnswerCollector(line.settings, line.number)
        warmups = {}
        for line in lines:  # one by one: a line warming up alone gets the cores
            warmups[line.number] = line.warm_up(args.window, args.timeout)
            print(f"line {line.number} warmed up with {warmups[line.number]} frames", file=sys.stderr)
        before = {line.number: len(line.answers.all) for line in lines}
        started = time.monotonic()
        until = started + args.seconds
        feeders = [threading.Thread(target=line.feed, args=(until, args.in_flight, args.timeout)) for line in lines]
        for feeder in feeders:
            feeder.start()
        correction_ids = operator(store, lines, args.corrections, until)
        for feeder in feeders:
            feeder.join()
        for line in lines:
            if line.answers.wait_for([f for f in line.sent if f.startswith("timed")], args.timeout):
                raise HarnessError(f"line {line.number} left frames unanswered")
        elapsed = time.monotonic() - started
        effect = _correction_effects(store, [line.number for line in lines], correction_ids, args.timeout)
        buckets = _merged_buckets([line.store_write_buckets() for line in lines])
        exit_codes = {}
        for line in lines:
            with ControlClient(line.settings) as control:
                control.call("shutdown", timeout_ms=30_000)
            exit_codes[line.number] = line.process.wait(timeout=args.timeout)
            line.answers.close()
    finally:
        store.close()
        for line in lines:
            if line.process.poll() is None:
                line.process.kill()
                line.process.wait()

    per_line = {
        line.number: {
            "decisions": sum(m["topic"].endswith(".decision") for _, m in line.answers.all[before[line.number] :]),
            "refusals": sum(m["topic"].endswith(".refusal") for _, m in line.answers.all[before[line.number] :]),
        }
        for line in lines
    }
    for figures in per_line.values():
        figures["frames_per_second"] = figures["decisions"] / elapsed
    return {
        "machine": {"cpu": cpu_name(), "cpu_cores": len(os.sched_getaffinity(0)), "load_average": list(load_average)},
        "settings": {
            "lines": args.lines,
            "backbone": args.backbone,
            "image_size": args.size,
            "window": args.window,
            "threads_per_daemon": args.threads,
            "seconds": args.seconds,
            "in_flight": args.in_flight,
            "image_px": args.image_px,
            "defect_rate": args.defect_rate,
            "store": make_url(store_url).get_backend_name(),
            "warmup_frames": warmups,
        },
        "per_line": per_line,
        "frames_per_second_total": sum(f["decisions"] for f in per_line.values()) / elapsed,
        "store_write_ms": {
            "writes": int(buckets[-1][1]),
            "p50": 1e3 * histogram_quantile(0.5, buckets),
            "p99": 1e3 * histogram_quantile(0.99, buckets),
        },
        "correction_to_effect_ms": effect,
        "daemon_exit_codes": exit_codes,
    }


def _merged_buckets(per_line: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    totals: dict[float, float] = {}
    for buckets in per_line:
        for upper, count in buckets:
            totals[upper] = totals.get(upper, 0.0) + count
    return sorted(totals.items())


def _correction_effects(
    store: Store, line_numbers: list[int], correction_ids: list[int], timeout_s: float
) -> dict[str, Any]:
    """Seconds from each correction's creation to its application by the line, once all are applied."""
    deadline = time.monotonic() + timeout_s
    wanted = set(correction_ids)
    while True:
        records = [c for number in line_numbers for c in store.corrections(number)]
        done = {c.id: c for c in records if c.id in wanted and c.applied_at is not None}
        if len(done) == len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    delays = [c.applied_at - c.created_at for c in done.values()]
    return {"made": len(wanted), "applied": len(done), **summary_ms(delays)} if delays else {"made": len(wanted)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-url", default=os.environ.get("TEST_POSTGRES_URL"), help="admin URL of a server")
    parser.add_argument("--lines", type=int, default=4)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=256, help="model input size in pixels")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per daemon")
    parser.add_argument("--seconds", type=float, default=120, help="length of the timed pass")
    parser.add_argument("--in-flight", type=int, default=8, help="unanswered frames per camera at most")
    parser.add_argument("--corrections", type=int, default=40, help="verdicts written into the store")
    parser.add_argument("--defect-rate", type=float, default=0.1)
    parser.add_argument("--image-px", type=int, default=256, help="side of the synthetic frames in pixels")
    parser.add_argument("--timeout", type=float, default=300, help="seconds without progress before giving up")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.store_url:
        parser.error("--store-url (or TEST_POSTGRES_URL) must name a database server")
    folder = Path(tempfile.mkdtemp(prefix="bench_plant_"))
    try:
        with scratch_database(args.store_url, prefix="musc_bench") as store_url:
            figures = bench(args, store_url, folder)
    except (HarnessError, TimeoutError) as error:
        print(f"error: {error}\nlogs: {folder}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    effect = figures["correction_to_effect_ms"]
    if any(figures["daemon_exit_codes"].values()) or effect.get("applied", 0) != effect["made"]:
        print(f"error: a daemon exited badly or a correction was not applied\nlogs: {folder}", file=sys.stderr)
        return 1
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
