"""The bounded queue between the daemon's threads: full means refuse (in items or bytes), deadlines, holds, settling."""

from __future__ import annotations

import threading
import time

import pytest

from daemon.observability import QueueBounds
from daemon.service.handoff import Handoff


def test_a_full_queue_refuses_and_waits_for_room_only_when_asked():
    queue: Handoff[int] = Handoff("q", 2)
    assert queue.put(1) and queue.put(2)
    assert not queue.put(3)
    threading.Timer(0.1, lambda: queue.take(1, 0)).start()
    assert queue.put(3, wait_s=2.0)
    assert queue.reading()[:2] == ("q", 2)


def test_items_that_cannot_be_served_in_time_come_out_apart_and_batches_stop_before_lateness():
    queue: Handoff[str] = Handoff("q", 10)
    now = time.time()
    queue.put("gone", now - 1)
    queue.put("soon", now + 2.5)  # in time alone (2 s of work) with half a second to spare for a busy machine
    queue.put("later", now + 10)
    queue.put("never", now + 100)
    batch, expired = queue.take(5, 0, cost_s=lambda n: 2.0 * n)
    assert expired == ["gone"]
    assert batch == ["soon"]  # "soon" would be late in a batch of two
    batch, _ = queue.take(5, 0, cost_s=lambda n: 2.0 * n)
    assert batch == ["later", "never"]


def test_expire_removes_only_what_would_pass_its_deadline():
    queue: Handoff[str] = Handoff("q", 10)
    now = time.time()
    for name, deadline in (("a", now + 0.05), ("b", now + 5), ("c", now + 0.01)):
        queue.put(name, deadline)
    assert sorted(queue.expire(cost_s=0.1)) == ["a", "c"]
    assert queue.take(5, 0)[0] == ["b"]


def test_a_held_queue_gives_nothing_until_released_or_closed():
    queue: Handoff[int] = Handoff("q", 4)
    queue.put(1)
    queue.hold()
    assert queue.held and queue.take(4, 0.05) == ([], [])
    queue.hold(False)
    assert queue.take(4, 0.05) == ([1], [])
    queue.hold()
    queue.put(2)
    queue.close()
    assert not queue.held and queue.take(4, 0.05) == ([2], [])
    assert queue.finished and not queue.put(3)


def test_settled_waits_for_the_taker_to_finish():
    queue: Handoff[int] = Handoff("q", 4)
    queue.put(1)
    batch, _ = queue.take(4, 0)
    assert not queue.settled(0.05)
    queue.done(len(batch))
    assert queue.settled(0.05)


def test_a_queue_needs_room():
    with pytest.raises(ValueError, match="at least one"):
        Handoff("q", 0)
    with pytest.raises(ValueError, match="max_bytes must be at least 0"):
        Handoff("q", 1, max_bytes=-1)


def test_a_queue_bounded_in_bytes_refuses_what_would_pass_the_bound_and_counts_what_leaves():
    queue: Handoff[bytes] = Handoff("frames", 100, max_bytes=10, weigh=len)
    assert queue.put(b"a" * 6)
    assert not queue.put(b"b" * 5)  # 11 bytes: over the bound, however few items
    assert queue.put(b"c" * 4)  # exactly 10
    assert queue.bounds() == QueueBounds("frames", 10, 100, 10)
    threading.Timer(0.1, lambda: queue.take(1, 0)).start()
    assert queue.put(b"d" * 6, wait_s=2.0)  # room made by a take
    assert queue.bounds().bytes == 10
    now = time.time()
    assert queue.put(b"e", deadline=now - 1) is False  # full: 11 bytes
    assert queue.take(1, 0)[0] == [b"c" * 4] and queue.put(b"e", deadline=now - 1)
    assert queue.expire() == [b"e"] and queue.bounds().bytes == 6
    assert queue.take(5, 0) == ([b"d" * 6], []) and queue.bounds().bytes == 0
    assert queue.put(b"f" * 50)  # heavier than the bound alone: an empty queue still takes it
    assert not queue.put(b"g")
    assert queue.reading()[:2] == ("frames", 1)
