#!/usr/bin/env python3
"""Soak the real line daemon: a long run with bad frames, overload, operators' marks and a kill -9 half way.

The daemon (``musc-daemon start``) and a camera run on loopback in a temporary folder. The camera sends
``--frames`` frames, ``--malformed`` of them broken in one of five ways; the first half at ``--slow-rate``
(which the line keeps up with), the second at ``--fast-rate`` (faster than it can score). At the middle the
daemon is killed with SIGKILL and started again while the camera goes on, staying connected until the line is
back as a real camera would. Every ``--mark-every-s`` seconds an operator marks a frame of the review queue
(ok and defect in turn) through the store, as the review tools do.

It reports and checks:
- crashes: the daemon never dies except by the deliberate kill, and stops cleanly at the end;
- accounting: every frame sent is answered, or recorded with its reason (refused as interrupted by the
  kill), or was on the wire when the daemon was killed (never received, so unanswerable: counted apart). Those
  were sent in the seconds around the kill: before it, or after it into the dead connection before ZeroMQ
  noticed, which drops what its pipe to a vanished peer still holds;
  the store's received = decided + refused, with nothing pending;
- corrections: every mark is applied, none failed, and the running scorer holds each active one;
- resources: the daemon's resident memory levels off (growth over the second half of each daemon's life under
  5 %; growth from its 25 % point and a per-minute curve are reported too), and the artifact folder never
  holds more than ``--max-files`` pictures. A daemon that lived under two minutes is not judged: its memory
  is still warming up (a run where none lived that long reports the check as null, "not judged");
- time: p50/p99 of decided frames (camera send to answer received), frames shed as late and overloaded,
  and how long after max(deadline, arrival) each late frame was answered (must be under 100 ms).
The exit status is 1 when a check fails. Example (2 CPU cores): ``python tools/soak.py --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from line_harness import LINE, HarnessError, start_daemon, summary_ms, wait_ready

from daemon.review.queue import mark, review_queue
from daemon.store import Store
from musc_online.client import AnswerCollector, ControlClient, FrameSender
from musc_online.protocol import encode_frame
from musc_online.synthetic import camera_frames
from musc_online.transport import TransportSettings, free_port_block

CAMERA = "soak"
IN_TRANSIT_S = 5.0  # frames lost in the kill were sent at most this long before or after it (see the docstring)
MEMORY_JUDGED_AFTER_S = 120  # a daemon's life before its memory curve says anything about leaks
MALFORMED_KINDS = ("bad_json", "bad_payload", "wrong_line", "bad_field", "duplicate_frame_id")


def broken(kind: str, good: np.ndarray, frame_id: str, previous_id: str) -> list[bytes]:
    """A frame message broken in one of five ways (a repeated id is a valid frame with an earlier frame's id)."""
    parts = encode_frame(good, line=LINE, camera=CAMERA, frame_id=frame_id, encoding="jpeg")
    if kind == "bad_json":
        return [b"{" + parts[0][:20], parts[1]]
    if kind == "bad_payload":
        return [parts[0], parts[1][: len(parts[1]) // 3]]
    if kind == "wrong_line":
        return encode_frame(good, line=LINE + 1, camera=CAMERA, frame_id=frame_id, encoding="jpeg")
    if kind == "bad_field":
        return [parts[0].replace(b'"encoding":"jpeg"', b'"encoding":"jpeg","shape":[1,2]'), parts[1]]
    return encode_frame(good, line=LINE, camera=CAMERA, frame_id=previous_id, encoding="jpeg")


class Watcher:
    """Samples the daemon's resident memory and the artifact folder while the soak runs."""

    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.pid: int | None = None
        self.memory: list[tuple[float, int, int]] = []  # (time, pid, resident KiB)
        self.pictures: list[tuple[float, int, int]] = []  # (time, files, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            now = time.time()
            pid = self.pid
            if pid is not None:
                try:
                    text = Path(f"/proc/{pid}/status").read_text()
                    rss = int(next(line.split()[1] for line in text.splitlines() if line.startswith("VmRSS")))
                    self.memory.append((now, pid, rss))
                except (OSError, StopIteration):
                    pass
            files = [p for p in self.artifacts.rglob("*.png")] if self.artifacts.is_dir() else []
            self.pictures.append((now, len(files), sum(p.stat().st_size for p in files if p.exists())))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def growth_percent(self, start: float = 0.25) -> list[float]:
        """Per daemon process that lived ``MEMORY_JUDGED_AFTER_S`` or longer: resident memory at the end of its
        life over that at ``start`` of it, in % above 100 (medians of a tenth of the samples each)."""
        growth = []
        for pid in dict.fromkeys(p for _, p, _ in self.memory):
            life = [(when, kib) for when, p, kib in self.memory if p == pid]
            if life[-1][0] - life[0][0] >= MEMORY_JUDGED_AFTER_S:
                rss = [kib for _, kib in life]
                first = int(start * len(rss))
                warm = float(np.median(rss[first : first + max(2, len(rss) // 10)]))
                late = float(np.median(rss[-max(2, len(rss) // 10) :]))
                growth.append(100.0 * (late / warm - 1.0))
        return growth

    def memory_minutes(self) -> list[tuple[int, int, float]]:
        """(pid, minute since the soak began, median resident MiB) for the report: the curve behind the figures."""
        if not self.memory:
            return []
        begin = self.memory[0][0]
        minutes: dict[tuple[int, int], list[int]] = {}
        for when, pid, kib in self.memory:
            minutes.setdefault((pid, int((when - begin) // 60)), []).append(kib)
        return [(pid, minute, float(np.median(kib)) / 1024) for (pid, minute), kib in minutes.items()]


class Operator:
    """Marks the first frame of the review queue every ``period_s`` (ok and defect in turn), as review does."""

    def __init__(self, store: Store, settings: TransportSettings, period_s: float) -> None:
        self.store = store
        self.settings = settings
        self.period_s = period_s
        self.marks: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            queue = review_queue(self.store, LINE, limit=1)
            if queue:
                verdict = "ok" if len(self.marks) % 2 == 0 else "defect"
                result = mark(self.store, self.settings, LINE, queue[0].frame_id, verdict, "soak", timeout_ms=5000)
                self.marks.append(result["correction"])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def soak(args: argparse.Namespace, data_dir: Path, log_path: Path) -> dict[str, Any]:
    """Run the soak; returns the figures and checks."""
    base_port = free_port_block(LINE)
    settings = TransportSettings.for_line(LINE, base_port)
    daemon_settings = {
        "MUSC_MODEL__BACKBONE": args.backbone,
        "MUSC_MODEL__IMAGE_SIZE": str(args.size),
        "MUSC_MODEL__DEVICE": args.device,
        "MUSC_ONLINE__WINDOW": str(args.window),
        "MUSC_PIPELINE__MAX_AGE_MS": str(args.max_age_ms),
        "MUSC_ARTIFACTS__MAX_FILES": str(args.max_files),
        "MUSC_ARTIFACTS__KEEP_OK_EVERY": "10",
    }
    line_dir = data_dir / f"line-{LINE}"
    watcher = Watcher(line_dir / "artifacts")
    rng = np.random.default_rng(args.seed)
    frames = camera_frames("synthetic", seed=args.seed, defect_rate=0.1, size=args.image_px)
    broken_at = set(rng.choice(args.frames, int(args.malformed * args.frames), replace=False).tolist())
    processes, exits, ready_at = [], [], []
    sent: dict[str, float] = {}  # frame id -> send time, for valid frames
    malformed: dict[str, int] = dict.fromkeys(MALFORMED_KINDS, 0)
    started = time.time()

    def launch() -> None:
        processes.append(start_daemon(data_dir, base_port, log_path, daemon_settings))
        with ControlClient(settings) as control:
            wait_ready(processes[-1], control, args.timeout)
        ready_at.append(time.time())
        watcher.pid = processes[-1].pid

    launch()
    answers = AnswerCollector(settings, LINE)
    store = Store.open(f"sqlite:///{line_dir / 'store.db'}")
    operator = Operator(store, settings, args.mark_every_s)
    killed_at = 0.0
    relaunch = threading.Thread(target=launch, daemon=True)
    try:
        with FrameSender(settings, line=LINE, send_timeout_ms=int(1e3 * args.timeout)) as camera:
            next_send = time.monotonic()
            previous = "s000000"
            for i in range(args.frames):
                next_send += 1.0 / (args.slow_rate if i < args.frames // 2 else args.fast_rate)
                time.sleep(max(0.0, next_send - time.monotonic()))
                frame_id, image = f"s{i:06d}", next(frames)
                if i in broken_at:
                    kind = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
                    malformed[kind] += 1
                    camera.send_parts(broken(kind, image, frame_id, previous))
                else:
                    sent[frame_id] = time.time()
                    camera.send(image, camera=CAMERA, frame_id=frame_id, encoding="jpeg", timestamp=sent[frame_id])
                    previous = frame_id
                if i == args.frames // 2:  # the camera goes on while the line restarts
                    killed_at = time.time()
                    processes[-1].kill()
                    exits.append(("killed", processes[-1].wait()))
                    relaunch.start()
                if i % 500 == 0:
                    print(f"{i} frames sent, {len(answers.all)} answers", file=sys.stderr)
            relaunch.join()  # a camera stays on while its line restarts: what it queued meanwhile is delivered
        missing = answers.wait_for(list(sent), stall_s=10)
        operator.close()
        with ControlClient(settings) as control:
            status = control.call("status", timeout_ms=60_000)["result"]
            control.call("shutdown", timeout_ms=30_000)
        exits.append(("final", processes[-1].wait(timeout=args.timeout)))
    finally:
        answers.close()
        watcher.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
    restart_s = ready_at[1] - killed_at if len(ready_at) > 1 else None
    run = {"sent": sent, "missing": missing, "malformed": malformed, "exits": exits, "killed_at": killed_at}
    return _report(args, status, store, answers, operator.marks, run, restart_s, watcher, started)


def _valid_answers(answers: AnswerCollector) -> dict[str, tuple[float, dict[str, Any]]]:
    """Each frame id's answer: its decision when there is one, else its first refusal. A malformed frame that
    repeats an earlier id is refused as a duplicate, sometimes before the original is decided: that refusal
    answers the repeat, not the original."""
    chosen: dict[str, tuple[float, dict[str, Any]]] = {}
    for arrived, message in answers.all:
        frame_id = str(message.get("frame_id"))
        if frame_id not in chosen or (chosen[frame_id][1].get("code") and message.get("code") is None):
            chosen[frame_id] = (arrived, message)
    return chosen


def _report(args, status, store, answers, marks, run, restart_s, watcher, started) -> dict[str, Any]:
    """The figures of a finished soak, and its checks."""
    sent, missing, exits = run["sent"], run["missing"], run["exits"]
    counts = store.counts(LINE)
    recorded = store.frame_outcomes(LINE, missing)
    decided, late, overloaded, other = [], [], [], []
    answered = _valid_answers(answers)
    for frame_id in sent:
        if frame_id not in answered:
            continue
        arrived, message = answered[frame_id]
        code = message.get("code")
        if code is None:
            decided.append(arrived - sent[frame_id])
        elif code == "late":
            deadline = sent[frame_id] + args.max_age_ms / 1000
            late.append(arrived - max(deadline, message["received_at"]))
        elif code == "overloaded":
            overloaded.append(frame_id)
        else:
            other.append(f"{frame_id}: {code}")
    corrections = {c.id: c for c in store.corrections(LINE)}
    marked = [corrections[i] for i in marks]
    active = [c for c in corrections.values() if c.undoes is None and c.undone_at is None]
    pictures = [files for _, files, _ in watcher.pictures]
    growth, plateau = watcher.growth_percent(), watcher.growth_percent(start=0.5)
    in_transit = [i for i in missing if i not in recorded]
    sent_before_kill = [run["killed_at"] - sent[i] for i in in_transit]  # negative: sent after the kill
    figures = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "seconds": time.time() - started,
        "frames": {
            "sent": args.frames,
            "valid": len(sent),
            "malformed": run["malformed"],
            "decided": len(decided),
            "late": len(late),
            "overloaded": len(overloaded),
            "refused_otherwise": other[:20],
            "unanswered": len(missing),
            "unanswered_but_recorded": recorded,
            "in_transit_at_the_kill": len(in_transit),
            "in_transit_sent_before_the_kill_s": max(sent_before_kill, default=0.0),
        },
        "store": dict(counts),
        "daemon_exits": exits,
        "kill_to_ready_s": restart_s,
        "recovered_after_kill": status.get("recovered"),
        "latency_decided_ms": summary_ms(decided),
        "late_answered_after_due_ms": summary_ms(late),
        "corrections": {
            "marked": len(marked),
            "applied": sum(c.applied_at is not None for c in marked),
            "failed": [f"{c.id}: {c.audit['error']}" for c in marked if c.audit and "error" in c.audit],
            "active_in_store": len(active),
            "active_in_scorer": status["scorer"]["corrections"],
        },
        "memory_growth_after_warmup_percent": growth,
        "memory_growth_second_half_percent": plateau,
        "memory_mib_per_minute": watcher.memory_minutes(),
        "rss_mib_last": watcher.memory[-1][2] / 1024 if watcher.memory else None,
        "artifacts": {"max_files": args.max_files, "most_seen": max(pictures, default=0), "at_end": pictures[-1]},
    }
    figures["checks"] = {
        "no_crash": exits[0][0] == "killed" and exits[-1] == ("final", 0) and len(exits) == 2,
        "every_frame_accounted": counts["received"] == counts["decided"] + counts["refused"]
        and counts["pending"] == 0
        and not other
        and all(abs(before) <= IN_TRANSIT_S for before in sent_before_kill),
        "no_correction_lost": len(marked) == figures["corrections"]["applied"]
        and not figures["corrections"]["failed"]
        and len(active) == status["scorer"]["corrections"],
        "memory_flat": max(plateau) < 5.0 if plateau else None,  # levelled off: no growth over each second half
        "artifacts_within_limit": figures["artifacts"]["most_seen"] <= args.max_files,
        "late_answered_within_100ms": not late or max(late) <= 0.1,
    }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--malformed", type=float, default=0.03, help="share of broken messages")
    parser.add_argument("--slow-rate", type=float, default=3.0, help="frames/s of the first half (within capacity)")
    parser.add_argument(
        "--fast-rate", type=float, default=5.0, help="frames/s of the second half (beyond what 2 cores score)"
    )
    parser.add_argument("--mark-every-s", type=float, default=60.0, help="seconds between operators' marks")
    parser.add_argument("--max-age-ms", type=int, default=2000, help="the line's age budget")
    parser.add_argument("--max-files", type=int, default=100, help="the artifact folder's limit")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-px", type=int, default=256, help="side of the synthetic frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the daemon at most")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.frames < 20 or not 0 <= args.malformed < 0.5 or min(args.slow_rate, args.fast_rate) <= 0:
        parser.error("--frames at least 20, --malformed in [0, 0.5), rates above 0")
    data_dir = Path(tempfile.mkdtemp(prefix="soak_"))
    log_path = data_dir / "daemon.log"
    try:
        figures = soak(args, data_dir, log_path)
    except (HarnessError, TimeoutError) as error:
        print(f"error: {error}\ndaemon log: {log_path}", file=sys.stderr)
        return 1
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    failed = [name for name, ok in figures["checks"].items() if ok is False]
    unjudged = [name for name, ok in figures["checks"].items() if ok is None]
    if unjudged:
        print(f"note: not judged (run too short): {', '.join(unjudged)}", file=sys.stderr)
    if failed:
        print(f"error: checks failed: {', '.join(failed)}\ndaemon log: {log_path}", file=sys.stderr)
        return 1
    shutil.rmtree(data_dir)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
