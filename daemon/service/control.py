"""The control thread: one reply to every request on the control socket; a failed command never stops the line.

Commands: ``status``, ``pause`` and ``resume`` (scoring holds; frames keep being received and answered
late if held past their budget), ``apply_corrections``, ``snapshot``, ``reload_judges``, ``judges`` (list,
add, remove, export, import), ``band`` (show, set, recalibrate) and ``shutdown``. Slow work (reading
images, extracting features, writing files) happens outside the scorer's lock.

Judge bank files are written and read only inside the line's exchange folders (``exchange_folders``: its own
``exports/`` and ``[paths] export_dir``): a control request cannot make the daemon overwrite its store or any
other file, nor parse a file from elsewhere. Paths are resolved first, so ``..`` and symbolic links that lead
out are refused too. ``add`` and ``reload_judges`` only read images, from any folder the daemon may read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.service.corrections import CorrectionApplier
from daemon.service.frames import Accepted
from daemon.service.handoff import Handoff
from daemon.store import Store
from musc_online.datasets import images_in, load_image
from musc_online.messages import control_reply, parse_control_request
from musc_online.online.judges import add_judges, prepare_judges, remove_judge
from musc_online.online.persistence import (
    add_imported_judges,
    judges_archive,
    judges_from_archive,
    read_judges,
    write_judges,
)
from musc_online.online.scorer import OnlineScorer
from musc_online.protocol import ProtocolError
from musc_online.transport import Socket, recv_parts, send_parts

log = logging.getLogger("musc.daemon.control")

POLL_MS = 100
EXPORTS = "exports"  # the line's own exchange folder for judge bank files, under its data folder


def exchange_folders(line_dir: Path, export_dir: Path | None) -> tuple[Path, ...]:
    """The folders judge bank files may be exported to and imported from: ``<line_dir>/exports`` and, if set,
    the configured ``export_dir``."""
    return (line_dir / EXPORTS, *([export_dir] if export_dir else []))


def inside(path: str | Path, folders: tuple[Path, ...], what: str) -> Path:
    """``path`` resolved (``..`` and symbolic links followed) when it lies inside one of ``folders``; else
    ValueError naming it and the folders allowed."""
    resolved = Path(path).resolve()
    if any(resolved.is_relative_to(folder.resolve()) for folder in folders):
        return resolved
    allowed = " or ".join(str(folder.resolve()) for folder in folders)
    raise ValueError(
        f"{what}: {path} is outside the folders this line exchanges files through ({allowed}); set [paths] "
        "export_dir to allow another folder"
    )


class Control:
    """Answers the line's control socket until ``stopping`` is set."""

    def __init__(
        self,
        line: int,
        sock: Socket,
        scorer: OnlineScorer,
        lock: threading.Lock,
        store: Store,
        corrections: CorrectionApplier,
        snapshot: Callable[[], Path],
        status: Callable[[], dict],
        judges_dir: Path | None,
        exchange: tuple[Path, ...],
        frames: Handoff[Accepted],
        stopping: threading.Event,
    ) -> None:
        self.line = line
        self.sock = sock
        self.scorer = scorer
        self.lock = lock
        self.store = store
        self.corrections = corrections
        self.snapshot = snapshot
        self.status = status
        self.judges_dir = judges_dir
        self.exchange = exchange
        self.frames = frames
        self.stopping = stopping

    def run(self) -> None:
        """The thread's body."""
        while not self.stopping.is_set():
            raw = recv_parts(self.sock, POLL_MS)
            if raw is None:
                continue
            try:
                command, args = parse_control_request(raw)
                reply = control_reply(True, self.command(command, args))
            except ProtocolError as error:
                reply = control_reply(False, error=error.message)
            except Exception as error:  # a failed command is answered, the daemon goes on
                expected = isinstance(error, KeyError | ValueError | OSError)
                log.warning("control command failed: %s", error, exc_info=not expected)
                text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
                reply = control_reply(False, error=str(text) or type(error).__name__)
            send_parts(self.sock, [reply], timeout_ms=1000)

    def command(self, command: str, args: dict[str, Any]) -> object:
        """Carry out one command; its result is the reply's ``result``."""
        if command == "status":
            return self.status()
        if command in ("pause", "resume"):
            self.frames.hold(command == "pause")
            self.store.log_event(self.line, command, f"scoring {command}d", args or None)
            return {"paused": self.frames.held}
        if command == "apply_corrections":
            applied = self.corrections.apply_pending()
            if applied:
                self.snapshot()
            return {"applied": applied}
        if command == "snapshot":
            return {"saved": str(self.snapshot())}
        if command == "reload_judges":
            return {"added": self.seed_judges(args.get("folder") or self.judges_dir)}
        if command == "judges":
            return self.judges(args)
        if command == "band":
            return self.band(args)
        if command == "shutdown":
            self.stopping.set()
            return {"stopping": True}
        raise ValueError(f"unknown command {command!r}")

    def seed_judges(self, folder: str | Path | None) -> int:
        """Add a folder's images as judges and save the state; returns how many were added."""
        added = seed_judges(self.scorer, self.lock, self.store, self.line, folder)
        if added:
            self.snapshot()
        return added

    def judges(self, args: dict[str, Any]) -> object:
        """Curate the judge bank: list, add a folder, remove one, export to or import from a file or the store."""
        action = args.get("action")
        if action == "list":
            sources = {j.judge_id: j.source for j in self.store.judges(self.line)}
            with self.lock:
                bank = self.scorer.judges
                ids = bank.ids() if bank else []
                return [{"id": i, "score": bank.score(i), "source": sources.get(i, "?")} for i in ids]
        if action == "add":
            return {"added": self.seed_judges(args["folder"])}
        if action == "remove":
            with self.lock:
                remove_judge(self.scorer, args["id"])
            self.store.sync_judge(self.line, args["id"], False, "seed")
            self.snapshot()
            return {"removed": args["id"]}
        if action == "export":
            with self.lock:
                if self.scorer.judges is None or len(self.scorer.judges) == 0:
                    raise ValueError("the judge bank is empty: nothing to export")
                contents = self.scorer.judges.contents(self.scorer.fingerprint)
            count = len(contents.meta["ids"])
            if "store_name" in args:  # into the store, where a line on any host can import it
                data = judges_archive(contents)
                self.store.save_judge_bank(args["store_name"], self.line, count, self.scorer.fingerprint, data)
                return {"exported": count, "store_name": args["store_name"]}
            path = inside(args["file"], self.exchange, "judges export")
            write_judges(contents, path)
            return {"exported": count, "file": str(path)}
        if action == "import":
            if "store_name" in args:
                saved = self.store.judge_bank(args["store_name"])
                incoming = judges_from_archive(saved.data, f"judge bank {saved.name!r} in the store", self.scorer)
            else:
                path = inside(args["file"], self.exchange, "judges import")
                incoming = read_judges(path, self.scorer.fingerprint, self.scorer.device)
            with self.lock:
                added = add_imported_judges(self.scorer, incoming)
            for judge_id in added:
                self.store.sync_judge(self.line, judge_id, True, "import")
            self.snapshot()
            return {"imported": len(added)}
        raise ValueError(f"unknown judges action {action!r}: list, add, remove, export or import")

    def band(self, args: dict[str, Any]) -> object:
        """Show the decision band, set it by hand, or recalibrate it from the judges and voters."""
        action = args.get("action", "show")
        if action not in ("show", "set", "recalibrate"):
            raise ValueError(f"unknown band action {action!r}: show, set or recalibrate")
        with self.lock:
            before = self.scorer.stats()["band"]
            if action == "set":
                self.scorer.set_band(float(args["low"]), float(args["high"]))
            elif action == "recalibrate":
                self.scorer.recalibrate()
            after = self.scorer.stats()["band"]
        if action != "show":
            operator = args.get("operator") or "unknown"
            message = (
                f"{operator}: band {action} from {before['low']:.4g}..{before['high']:.4g} ({before['source']}) "
                f"to {after['low']:.4g}..{after['high']:.4g} ({after['source']})"
            )
            self.store.log_event(
                self.line, f"band_{action}", message, {"before": before, "after": after, "by": operator}
            )
            self.snapshot()
        return {"band": after, "before": before}


def seed_judges(scorer: OnlineScorer, lock: threading.Lock, store: Store, line: int, folder: str | Path | None) -> int:
    """Add a folder's images as judges (those not already in the bank); returns how many were added.

    Images are read and their features extracted without holding the scorer; only the bank update holds it.
    """
    if not folder:
        raise ValueError("no judges folder given and none configured ([online] judges_dir)")
    pairs = [(f"seed/{p.stem}", p) for p in images_in(folder)]
    with lock:
        pairs = [(i, p) for i, p in pairs if not (scorer.judges and i in scorer.judges)]
    candidates = prepare_judges(scorer, [load_image(p) for _, p in pairs], [i for i, _ in pairs])
    with lock:
        added = add_judges(scorer, candidates)
    for judge_id, _ in pairs:
        store.sync_judge(line, judge_id, True, "seed")
    return added
