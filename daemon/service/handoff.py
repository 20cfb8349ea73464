"""Bounded queues between the daemon's threads: full means refuse (never wait, never drop silently).

Each item may carry a deadline; items past it come out separately so the taker can answer them as late.
Every queue reports its depth and the age of its oldest item for the metrics.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    item: T
    queued_at: float  # monotonic
    deadline: float  # epoch seconds


class Handoff(Generic[T]):
    """A FIFO of at most ``capacity`` items; ``close`` lets takers finish what is left, then stop."""

    def __init__(self, name: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"queue {name} needs room for at least one item, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._entries: deque[_Entry[T]] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._held = False  # takers get nothing until released (a paused line)
        self._unfinished = 0  # items taken but not yet reported ``done`` by their taker

    def put(self, item: T, deadline: float = math.inf, wait_s: float = 0.0) -> bool:
        """Queue ``item``, waiting up to ``wait_s`` for room; False (nothing queued) when full or closed."""
        with self._ready:
            if wait_s > 0 and not self._closed and len(self._entries) >= self.capacity:
                self._ready.wait_for(lambda: self._closed or len(self._entries) < self.capacity, wait_s)
            if self._closed or len(self._entries) >= self.capacity:
                return False
            self._entries.append(_Entry(item, time.monotonic(), deadline))
            self._ready.notify_all()
            return True

    def close(self) -> None:
        """No more puts; takers get what is left, then empty lists."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def hold(self, held: bool = True) -> None:
        """Hold the queue (takers get nothing, items wait and may expire) or release it; closing releases it."""
        with self._ready:
            self._held = held
            self._ready.notify_all()

    @property
    def held(self) -> bool:
        """Whether takers are held back."""
        with self._ready:
            return self._held and not self._closed

    @property
    def closed(self) -> bool:
        """No more items will come."""
        with self._ready:
            return self._closed

    @property
    def finished(self) -> bool:
        """Closed and empty: a taker's loop can end."""
        with self._ready:
            return self._closed and not self._entries

    def take(
        self, limit: int, timeout_s: float, cost_s: Callable[[int], float] = lambda n: 0.0
    ) -> tuple[list[T], list[T]]:
        """Up to ``limit`` items in order, and the items that can no longer be served in time.

        Waits up to ``timeout_s`` for the first item. ``cost_s(n)`` is how long serving n items is expected to
        take: an item that would pass its deadline even alone is returned as expired; the batch stops before an
        item that would make any of it late (that item waits for the next take).
        """
        with self._ready:
            available = lambda: self._closed or (self._entries and not self._held)  # noqa: E731
            if not self._ready.wait_for(available, timeout_s):
                return [], []
            batch: list[_Entry[T]] = []
            expired: list[T] = []
            now = time.time()
            while self._entries and len(batch) < limit:
                entry = self._entries[0]
                if entry.deadline < now + cost_s(1):
                    expired.append(self._entries.popleft().item)
                    continue
                earliest = min([entry.deadline] + [e.deadline for e in batch])
                if batch and earliest < now + cost_s(len(batch) + 1):
                    break
                batch.append(self._entries.popleft())
            self._unfinished += len(batch)
            if batch or expired:
                self._ready.notify_all()  # room for waiting producers
            return [e.item for e in batch], expired

    def done(self, count: int) -> None:
        """The taker has finished ``count`` taken items (see ``settled``)."""
        with self._ready:
            self._unfinished -= count
            self._ready.notify_all()

    def settled(self, timeout_s: float) -> bool:
        """Wait until every item put so far has been taken and finished; False if that took over ``timeout_s``."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._entries and self._unfinished <= 0, timeout_s)

    def expire(self, cost_s: float = 0.0) -> list[T]:
        """Remove and return every item that would pass its deadline within ``cost_s`` seconds from now."""
        cutoff = time.time() + cost_s
        with self._ready:
            kept = deque(e for e in self._entries if e.deadline >= cutoff)
            if len(kept) == len(self._entries):
                return []
            expired = [e.item for e in self._entries if e.deadline < cutoff]
            self._entries = kept
            self._ready.notify_all()
            return expired

    def reading(self) -> tuple[str, int, float]:
        """(name, depth, seconds the oldest item has waited) for the metrics."""
        with self._ready:
            oldest = time.monotonic() - self._entries[0].queued_at if self._entries else 0.0
            return self.name, len(self._entries), oldest
