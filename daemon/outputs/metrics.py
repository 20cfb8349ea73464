"""The outputs' metrics, on the line's own registry: queue depth, messages sent and dropped, connected or not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

LABELS = ["line", "output"]


@dataclass(frozen=True)
class OutputMetrics:
    """One output's series among the line's metrics."""

    depth: Any
    up: Any
    sent: Any
    dropped: Any

    def watch(self, depth: Callable[[], int], up: Callable[[], bool]) -> None:
        """Read the queue depth and the connection when scraped."""
        self.depth.set_function(depth)
        self.up.set_function(lambda: float(up()))


class OutputFamilies:
    """The metric families every output of a line shares, labelled by ``output``."""

    def __init__(self, registry: CollectorRegistry, line: int) -> None:
        self.line = str(line)
        self.depth = Gauge("musc_output_queue_depth", "Messages waiting for an output.", LABELS, registry=registry)
        self.up = Gauge("musc_output_up", "1 while an output is connected, else 0.", LABELS, registry=registry)
        self.sent = Counter("musc_output_sent", "Messages an output delivered.", LABELS, registry=registry)
        self.dropped = Counter(
            "musc_output_dropped", "Messages an output dropped: its queue was full.", LABELS, registry=registry
        )

    def of(self, output: str) -> OutputMetrics:
        """The series of one output."""
        labels = {"line": self.line, "output": output}
        return OutputMetrics(
            self.depth.labels(**labels),
            self.up.labels(**labels),
            self.sent.labels(**labels),
            self.dropped.labels(**labels),
        )
