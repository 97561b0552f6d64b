"""Linearizable reads through Raft's ReadIndex, batched: every read waiting when a round
starts shares it (one leader heartbeat round for many reads), and a read only joins a
round that starts after it arrived, so a write acknowledged before the read began is
seen. Serializable reads skip this and read the member's local state."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Optional

from ..errors import NoLeaderError, RequestTimeoutError


class _Round:
    __slots__ = ("event", "started")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.started = 0.0


class ReadIndexer:
    """Asks the NodeDriver for read points on behalf of many readers."""

    def __init__(self, driver, retry: float, has_leader) -> None:
        self._driver = driver
        self._retry = retry              # a round unanswered this long is asked again
        self._has_leader = has_leader
        self._lock = threading.Lock()
        self._next: Optional[_Round] = None       # readers waiting for a round to start
        self._inflight: Optional[_Round] = None
        self._ids = itertools.count(1)
        self._prefix = b"%x:" % id(self)

    def wait(self, timeout: float) -> None:
        """Return once the member has applied everything committed before the call;
        NoLeaderError / RequestTimeoutError when that cannot be learnt in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            r = self._next
            if r is None:
                r = self._next = _Round()
            self._kick()
        while not r.event.wait(min(self._retry, max(0.0, deadline - time.monotonic()))):
            now = time.monotonic()
            if now >= deadline:
                raise (RequestTimeoutError if self._has_leader() else NoLeaderError)()
            with self._lock:
                if self._inflight is r and now - r.started >= self._retry:
                    self._start(r)                # lost (no leader then): ask again

    def _kick(self) -> None:
        if self._inflight is None and self._next is not None:
            r, self._next = self._next, None
            self._start(r)

    def _start(self, r: _Round) -> None:
        self._inflight = r
        r.started = time.monotonic()
        ctx = self._prefix + b"%d" % next(self._ids)
        self._driver.read_index(ctx, lambda index, r=r: self._done(r))

    def _done(self, r: _Round) -> None:
        """On the driver thread, once the read index is applied."""
        r.event.set()
        with self._lock:
            if self._inflight is r:
                self._inflight = None
            self._kick()
