"""A bounded, never-blocking queue of outgoing messages: full, it drops the oldest and counts it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any


class OutgoingQueue:
    """Messages waiting for one output; ``offer`` never blocks (the newest ``size`` are kept, older ones dropped
    and counted), ``take`` waits for one, ``done`` removes it once delivered (until then it is sent again)."""

    def __init__(self, size: int, on_drop: Callable[[], None] = lambda: None) -> None:
        self.size = size
        self.dropped = 0
        self._on_drop = on_drop
        self._items: deque[Any] = deque()
        self._changed = threading.Condition()
        self._closed = False

    def offer(self, item: Any) -> None:
        with self._changed:
            if len(self._items) >= self.size:
                self._items.popleft()
                self.dropped += 1
                self._on_drop()
            self._items.append(item)
            self._changed.notify()

    def peek(self, timeout_s: float) -> Any | None:
        """The oldest message (left in the queue), waiting up to ``timeout_s``; None when there is none."""
        with self._changed:
            self._changed.wait_for(lambda: self._items or self._closed, timeout_s)
            return self._items[0] if self._items else None

    def done(self, item: Any) -> None:
        """Remove ``item`` once delivered (unless it was dropped meanwhile)."""
        with self._changed:
            if self._items and self._items[0] is item:
                self._items.popleft()

    def close(self) -> None:
        """Wake ``peek`` for good: the output is stopping."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __len__(self) -> int:
        return len(self._items)
