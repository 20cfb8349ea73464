"""Stopping the line's threads within a bound: systemd (``TimeoutStopSec``) and Kubernetes
(``terminationGracePeriodSeconds``) kill a line that takes longer, and a stalled database must not be the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger("musc.daemon")


class BoundedJoin:
    """Joins the line's threads, in the order asked, all against one deadline; says which did not finish."""

    def __init__(
        self,
        threads: Iterable[threading.Thread],
        budget_s: float,
        queues: Callable[[], Iterable[tuple[str, int, float]]],
    ) -> None:
        self.threads = {thread.name: thread for thread in threads}
        self.budget_s = budget_s
        self.deadline = time.monotonic() + budget_s
        self.queues = queues  # (name, depth, oldest age) of the line's queues, for the report of what was left
        self.stuck: list[str] = []

    def join(self, *names: str) -> None:
        """Wait for these threads until the deadline; log (once per call) those still running then."""
        for name in names:
            self.threads[name].join(max(0.0, self.deadline - time.monotonic()))
        stuck = [name for name in names if self.threads[name].is_alive()]
        if stuck:
            queued = {name: depth for name, depth, _ in self.queues()}
            log.error(
                "shutdown: %s did not finish within %.0f s (queued: %s); stopping without them, and frames they "
                "leave pending are refused as interrupted at the next start",
                ", ".join(stuck),
                self.budget_s,
                queued,
                extra={"stuck": stuck, "queues": queued},
            )
            self.stuck += stuck

    @property
    def clean(self) -> bool:
        """Every thread joined so far finished in time."""
        return not self.stuck
