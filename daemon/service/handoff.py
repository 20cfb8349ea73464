"""Bounded queues between the daemon's threads: full means refuse (never wait, never drop silently).

A queue is bounded in items and, where its items are frames, in bytes: what the items weigh, so a burst of
large frames cannot hold more memory than the bound however few they are. Each item may carry a deadline;
items past it come out separately so the taker can answer them as late. Every queue reports its depth, its
bytes, its bounds and the age of its oldest item for the metrics and ``status``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from daemon.observability import QueueBounds, QueueReading

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    item: T
    queued_at: float  # monotonic
    deadline: float  # epoch seconds
    weight: int  # bytes


class Handoff(Generic[T]):
    """A FIFO of at most ``capacity`` items and, when ``max_bytes`` is set, at most ``max_bytes`` bytes as ``weigh``
    counts them; ``close`` lets takers finish what is left, then stop.

    An item heavier than ``max_bytes`` on its own still enters an empty queue (it could never enter otherwise), so
    the queue holds at most ``max(max_bytes, its heaviest item)``.
    """

    def __init__(
        self, name: str, capacity: int, max_bytes: int = 0, weigh: Callable[[T], int] = lambda item: 0
    ) -> None:
        if capacity < 1:
            raise ValueError(f"queue {name} needs room for at least one item, got {capacity}")
        if max_bytes < 0:
            raise ValueError(f"queue {name}: max_bytes must be at least 0 (0: bounded by count only), got {max_bytes}")
        self.name = name
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.weigh = weigh
        self._bytes = 0
        self._entries: deque[_Entry[T]] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._held = False  # takers get nothing until released (a paused line)
        self._unfinished = 0  # items taken but not yet reported ``done`` by their taker

    def put(self, item: T, deadline: float = math.inf, wait_s: float = 0.0) -> bool:
        """Queue ``item``, waiting up to ``wait_s`` for room; False (nothing queued) when full or closed."""
        weight = self.weigh(item)
        with self._ready:
            if wait_s > 0 and not self._closed and not self._room(weight):
                self._ready.wait_for(lambda: self._closed or self._room(weight), wait_s)
            if self._closed or not self._room(weight):
                return False
            self._entries.append(_Entry(item, time.monotonic(), deadline, weight))
            self._bytes += weight
            self._ready.notify_all()
            return True

    def _room(self, weight: int) -> bool:
        """Whether an item of ``weight`` bytes fits now (call with the lock held)."""
        if len(self._entries) >= self.capacity:
            return False
        return not self.max_bytes or not self._entries or self._bytes + weight <= self.max_bytes

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
            expired: list[_Entry[T]] = []
            now = time.time()
            while self._entries and len(batch) < limit:
                entry = self._entries[0]
                if entry.deadline < now + cost_s(1):
                    expired.append(self._entries.popleft())
                    continue
                earliest = min([entry.deadline] + [e.deadline for e in batch])
                if batch and earliest < now + cost_s(len(batch) + 1):
                    break
                batch.append(self._entries.popleft())
            self._bytes -= sum(e.weight for e in batch + expired)
            self._unfinished += len(batch)
            if batch or expired:
                self._ready.notify_all()  # room for waiting producers
            return [e.item for e in batch], [e.item for e in expired]

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
            expired = [e for e in self._entries if e.deadline < cutoff]
            self._entries = kept
            self._bytes -= sum(e.weight for e in expired)
            self._ready.notify_all()
            return [e.item for e in expired]

    def reading(self) -> QueueReading:
        """(name, depth, seconds the oldest item has waited) for the metrics."""
        with self._ready:
            oldest = time.monotonic() - self._entries[0].queued_at if self._entries else 0.0
            return self.name, len(self._entries), oldest

    def bounds(self) -> QueueBounds:
        """The bytes held now and the bounds, for the metrics and ``status``."""
        with self._ready:
            return QueueBounds(self.name, self._bytes, self.capacity, self.max_bytes)

    def status(self) -> dict[str, float]:
        """What ``status`` shows of the queue: depth, oldest item's age, bytes held, and the bounds."""
        _, depth, oldest = self.reading()
        _, held, capacity, max_bytes = self.bounds()
        return {"depth": depth, "oldest_age_s": oldest, "bytes": held, "capacity": capacity, "max_bytes": max_bytes}
