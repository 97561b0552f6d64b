"""Leases: TTLs that delete their keys when they expire or are revoked.

Persisted in the engine (l + id -> granted ttl; a + id + key for each attached key), so
revoke finds its keys without an in-memory index of keys. Deadlines live in memory only:
like etcd, a reopened store restarts every lease's countdown from its full TTL. A
background thread revokes expired leases (each revoke deletes its keys in one revision).
"""

from __future__ import annotations

import heapq
import math
import random
import threading
import time
from typing import Optional

MIN_TTL = 2          # etcd 3.4 with default election timeout: `lease grant 1` -> TTL(2s)
MAX_TTL = 9_000_000_000   # etcd's MaxLeaseTTL: above it, "etcdserver: too large lease TTL"


class Lease:
    """A granted lease (python-etcd3 style)."""

    def __init__(self, store, lease_id: int, ttl: int):
        self._store = store
        self.id = lease_id
        self.ttl = ttl

    @property
    def granted_ttl(self) -> int:
        """The TTL granted, 0 once expired or revoked (etcd's LeaseTimeToLive answers
        an unknown lease with TTL -1 and grantedTTL 0)."""
        return self._store.lease_granted_ttl(self.id)

    @property
    def remaining_ttl(self) -> int:
        """Whole seconds left, rounded down as etcd does (`lease grant 60` then
        `timetolive` says remaining(59s)); -1 once expired or revoked."""
        return self._store.lease_remaining_ttl(self.id)

    @property
    def keys(self) -> list:
        return self._store.lease_keys(self.id)

    def refresh(self) -> int:
        return self._store.refresh_lease(self.id)

    def revoke(self) -> bool:
        return self._store.revoke_lease(self.id)

    def __eq__(self, other):
        return isinstance(other, Lease) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return "Lease(id=%#x, ttl=%d)" % (self.id, self.ttl)


class LeaseTable:
    """In-memory deadlines of live leases and the expiry thread."""

    def __init__(self, revoke_cb, min_ttl: int = MIN_TTL):
        self._revoke_cb = revoke_cb
        self.min_ttl = min_ttl
        self._ttl: dict[int, int] = {}
        self._deadline: dict[int, float] = {}
        self._heap: list = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread: Optional[threading.Thread] = None

    # ---- table
    def effective_ttl(self, ttl: int) -> int:
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise TypeError("ttl must be an int (seconds)")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if ttl > MAX_TTL:
            raise ValueError("too large lease TTL (%d s > %d s)" % (ttl, MAX_TTL))
        return max(ttl, self.min_ttl)

    def new_id(self) -> int:
        while True:
            lid = random.getrandbits(63)
            if lid and lid not in self._ttl:
                return lid

    def __contains__(self, lid: int) -> bool:
        return lid in self._ttl

    def ids(self) -> list:
        return sorted(self._ttl)

    def add(self, lid: int, ttl: int) -> None:
        with self._cond:
            self._ttl[lid] = ttl
            self._touch(lid)

    def refresh(self, lid: int) -> int:
        with self._cond:
            ttl = self._ttl[lid]
            self._touch(lid)
            return ttl

    def remove(self, lid: int) -> None:
        with self._cond:
            self._ttl.pop(lid, None)
            self._deadline.pop(lid, None)

    def granted_ttl(self, lid: int) -> int:
        return self._ttl.get(lid, 0)

    def remaining(self, lid: int) -> int:
        d = self._deadline.get(lid)
        if d is None:
            return -1
        return max(0, math.floor(d - time.monotonic()))

    def expired(self, lid: int) -> bool:
        """True once lid's deadline has passed (exact: remaining() rounds down)."""
        d = self._deadline.get(lid)
        return d is not None and d <= time.monotonic()

    def postpone(self, lid: Optional[int] = None) -> None:
        """Restart the countdown of lid (None: of every lease) from its full TTL, as
        etcd's lessor does when a member becomes leader (Promote) and while it is not
        (a follower never expires a lease: the leader decides). O(leases)."""
        with self._cond:
            for i in ([lid] if lid is not None else list(self._ttl)):
                if i in self._ttl:
                    self._touch(i)

    def _touch(self, lid: int) -> None:
        d = time.monotonic() + self._ttl[lid]
        self._deadline[lid] = d
        heapq.heappush(self._heap, (d, lid))
        self._cond.notify_all()

    # ---- expiry thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="kvtrees-lease")
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _next_expired(self) -> Optional[int]:
        """Block until a lease expires (its id) or stop() (None)."""
        with self._cond:
            while not self._stop:
                now = time.monotonic()
                while self._heap and self._deadline.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)        # stale entry (refreshed or removed)
                if self._heap and self._heap[0][0] <= now:
                    return self._heap[0][1]
                self._cond.wait(None if not self._heap else self._heap[0][0] - now)
            return None

    def _run(self) -> None:
        while True:
            lid = self._next_expired()
            if lid is None:
                return
            try:
                self._revoke_cb(lid)
            except Exception:
                # closed store or I/O error: retry later rather than spin
                with self._cond:
                    if lid in self._deadline:
                        self._deadline[lid] = time.monotonic() + 1
                        heapq.heappush(self._heap, (self._deadline[lid], lid))
                    if self._stop:
                        return
