"""What a line daemon checks and takes before it loads or touches anything: one line, one daemon, and sockets
off loopback only with CURVE keys.

``LineClaim`` locks the line's folder first (``FolderLock``), then checks where its sockets will bind
(``check_server``: a start error off loopback without keys), and once the store is open takes the line's
advisory lock there on PostgreSQL (``Store.hold_line``), all before crash recovery refuses any pending frame.
"""

from __future__ import annotations

import os
import socket

from daemon.config import DaemonConfig
from daemon.store import FolderLock, Store, StoreLineLock
from musc_online.transport import TransportSettings, check_server


class LineClaim:
    """The line's locks, held until ``release``, and the transport settings the daemon binds with."""

    def __init__(self, config: DaemonConfig) -> None:
        self.line = config.line
        self._held: list[FolderLock | StoreLineLock] = [FolderLock.take(config.line_dir, config.line)]
        try:
            self.transport: TransportSettings = config.transport_settings()
            check_server(self.transport)
        except BaseException:
            self.release()
            raise

    def hold(self, store: Store) -> None:
        """Take the line's lock in ``store`` too (PostgreSQL: a daemon of this line on another host)."""
        held = store.hold_line(self.line, f"musc-daemon line {self.line} pid {os.getpid()} on {socket.gethostname()}")
        if held is not None:
            self._held.append(held)

    def release(self) -> None:
        """Let go of the line, the store's lock first: the next daemon of this line may start."""
        while self._held:
            self._held.pop().release()
