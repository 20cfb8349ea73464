"""One line, one daemon: the locks a daemon takes before it touches a line's store or state.

- The line's folder: an exclusive ``flock`` on ``<line dir>/daemon.lock``, which holds the holder's pid. The
  operating system lets go when the process ends, however it ends, so a crash leaves nothing to clean up.
- On PostgreSQL, where lines on several hosts share one database: a session advisory lock per line on a
  connection of its own, kept open while the daemon runs (``pg_try_advisory_lock``); the server lets go when
  that connection ends. Its ``application_name`` names the holder, for the refusal and for ``pg_stat_activity``.

A second daemon is refused at once with ``LineBusyError`` saying who holds the line.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Self

from sqlalchemy import Connection, text

from daemon.store.database import Database
from daemon.store.records import StoreError

LOCK_FILE = "daemon.lock"
LINE_LOCKS = 0x6D75  # "mu": the class key of the lines' advisory locks (the line number is the object key)
_HOLDER = text(
    "SELECT a.pid, a.application_name, a.client_addr, a.backend_start FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = :kind AND l.objid = :line AND l.objsubid = 2"
)


class LineBusyError(StoreError):
    """Another daemon serves this line (on this data folder, or in this PostgreSQL store)."""


class FolderLock:
    """The exclusive lock on a line's folder, held until ``release`` or the end of the process."""

    def __init__(self, handle: IO[str], path: Path) -> None:
        self._handle = handle
        self.path = path

    @classmethod
    def take(cls, line_dir: Path, line: int) -> Self:
        """Lock ``<line_dir>/daemon.lock`` (made if missing) and write this pid in it; LineBusyError naming the
        holder's pid when another process holds it."""
        line_dir.mkdir(parents=True, exist_ok=True)
        path = line_dir / LOCK_FILE
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LineBusyError(
                f"line {line} is already served by another daemon (pid {holder}) on {line_dir}: it holds {path}; "
                "stop that one first"
            ) from None
        except BaseException:
            handle.close()
            raise
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return cls(handle, path)

    def release(self) -> None:
        """Let go of the lock (closing the file does)."""
        self._handle.close()


class StoreLineLock:
    """A line's PostgreSQL advisory lock and the connection that holds it."""

    def __init__(self, conn: Connection, line: int) -> None:
        self._conn = conn
        self.line = line

    def release(self) -> None:
        """Unlock and close the connection (its end would unlock too)."""
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:kind, :line)"), {"kind": LINE_LOCKS, "line": self.line})
        finally:
            self._conn.close()


class LineLocks(Database):
    """Taking a line's lock in the store."""

    def hold_line(self, line: int, holder: str) -> StoreLineLock | None:
        """On PostgreSQL, take ``line``'s advisory lock on a connection of its own, named ``holder``; None on other
        databases (SQLite lives in the line's folder, which ``FolderLock`` guards). LineBusyError naming the
        holder and how to end a stale session when another daemon holds it."""
        if self.engine.dialect.name != "postgresql":
            return None
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            conn.detach()  # its own session, never handed back to the pool with the lock still held
            conn.execute(text("SELECT set_config('application_name', :name, false)"), {"name": holder[:63]})
            key = {"kind": LINE_LOCKS, "line": line}
            if conn.scalar(text("SELECT pg_try_advisory_lock(:kind, :line)"), key):
                return StoreLineLock(conn, line)
            found = conn.execute(_HOLDER, key).first()
        except BaseException:
            conn.close()
            raise
        conn.close()
        where = self.engine.url.render_as_string(hide_password=True)
        if found is None:  # it let go in between
            raise LineBusyError(f"line {line} was just served by another daemon in the store at {where}; try again")
        pid, name, address, since = found
        raise LineBusyError(
            f"line {line} is already served by another daemon in the store at {where}: "
            f"{name or 'a session'} from {address or 'a local socket'}, connected since {since:%Y-%m-%d %H:%M:%S %Z} "
            f"(server process {pid}); stop that one first, or if its host is gone for good end its session with "
            f"SELECT pg_terminate_backend({pid})"
        )
