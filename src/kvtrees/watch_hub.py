"""The store's watch hub: its watchers, and the delivery of each visible revision's
changes to them, in revision order, exactly once.

Writers hand over their changes (entry, previous entry) per revision; native writers
finish out of order, so delivery waits at a revision whose writer has not handed over
yet (that writer resumes it) and never passes the visible revision. With no watcher
nothing is kept; a watcher that joins starts after the visible revision and replays
older revisions from the store's revision log (the `replay` function it is given).
"""

from __future__ import annotations

import itertools
import threading
from typing import Callable, Optional

from .errors import CompactedError
from .mvcc import KeyValue
from .watch import CallbackWatch, DeleteEvent, PutEvent, Watcher

__all__ = ["WatchHub"]


class WatchHub:
    """Watchers of one store. `visible()` gives the store's visible revision,
    `replay(watcher, first, last)` the events of [first, last] from storage,
    `live_at(key, rev)` the live Entry of key at rev (for prev_kv not read by a write)."""

    def __init__(self, visible: Callable[[], int], replay: Callable, live_at: Callable,
                 next_revision: int, queue_limit: int, prev_unknown: object):
        self._visible = visible
        self._replay = replay
        self._live_at = live_at
        self._queue_limit = queue_limit
        self._prev_unknown = prev_unknown
        self._lock = threading.Lock()
        self._pending: dict[int, list] = {}    # rev -> changes, delivered once visible
        self._next = next_revision
        self._watchers: dict[int, Watcher] = {}
        self._callbacks: dict[int, CallbackWatch] = {}
        self._ids = itertools.count(1)

    # ---- writer side
    def watched(self) -> bool:
        """Whether any watcher exists (a hint: hand_over decides under the lock). O(1)."""
        return bool(self._watchers)

    def record(self, rev: int, changes: list) -> None:
        """Changes of a revision not visible yet (the writer holds the store's writer
        lock, so no watcher can have started after it). O(1)."""
        with self._lock:
            self._pending[rev] = changes

    def hand_over(self, rev: int, changes: Callable[[], list]) -> None:
        """Changes of an already visible revision: kept only if a watcher exists now,
        under the lock, so a watcher joining meanwhile either is seen here or starts
        after rev. changes() builds them only then. O(1) without watchers."""
        with self._lock:
            if not self._watchers or rev < self._next:   # (< next: a watcher that joined
                return                                   # after it replays it)
            self._pending[rev] = changes()
        self.publish()

    def published(self) -> int:
        """The newest revision handed to every watcher: events up to it are in their
        queues (or, for a watcher that joined later, in its replay). O(1)."""
        return self._next - 1

    def publish(self) -> None:
        """Deliver visible revisions in order, each once. O(revisions delivered)."""
        with self._lock:
            pending, visible, nxt = self._pending, self._visible(), self._next
            if not self._watchers:        # nobody to tell: skip to the visible revision
                for r in [r for r in pending if r <= visible]:
                    del pending[r]
                self._next = max(nxt, visible + 1)
                return
            while nxt <= visible:
                changes = pending.pop(nxt, None)
                if changes is None:
                    break
                watchers = list(self._watchers.values())
                events = self._events(changes, any(w.prev_kv for w in watchers))
                for watcher in watchers:
                    watcher.push(nxt, events)
                nxt += 1
            self._next = nxt

    def _events(self, changes: list, with_prev: bool) -> list:
        """Watch events of one revision's changes, with prev_kv only if a watcher wants
        it (a previous version the write did not read is read now)."""
        out = []
        for e, prev in changes:
            if with_prev and prev is self._prev_unknown:
                prev = self._live_at(e.key, e.mod - 1)
            prev_kv = prev.to_kv() if prev and with_prev else None
            if e.tombstone:
                out.append(DeleteEvent(KeyValue(e.key, b"", 0, e.mod, 0, 0), prev_kv))
            else:
                out.append(PutEvent(e.to_kv(), prev_kv))
        return out

    # ---- watchers
    def add(self, key: bytes, end: Optional[bytes], start_revision, prev_kv: bool, filters,
            compact_revision: int) -> Watcher:
        """A watcher from start_revision (None or <= 0: after the visible revision)."""
        if start_revision is not None and (isinstance(start_revision, bool)
                                           or not isinstance(start_revision, int)):
            raise TypeError("start_revision must be an int")
        with self._lock:   # no revision is delivered between reading cur and joining
            cur = self._visible()
            if not self._watchers:       # revisions <= cur were not handed over: replayed
                self._next = max(self._next, cur + 1)
            start = cur + 1 if not start_revision or start_revision <= 0 else start_revision
            w = Watcher(self, key, end, start, prev_kv, filters, self._queue_limit)
            w.id = next(self._ids)
            w.set_live_from(cur + 1)
            self._watchers[w.id] = w
            if start < compact_revision:
                w.fail(CompactedError("required revision %d has been compacted" % start,
                                      compact_revision))
            return w

    def add_callback(self, watcher: Watcher, callback: Callable) -> int:
        self._callbacks[watcher.id] = CallbackWatch(watcher, callback)
        return watcher.id

    def cancel(self, watch_id: int) -> None:
        cb = self._callbacks.pop(watch_id, None)
        if cb is not None:
            cb.cancel()
            return
        w = self._watchers.get(watch_id)
        if w is not None:
            w.cancel()

    def unregister(self, w: Watcher) -> None:
        self._watchers.pop(w.id, None)

    def rearm(self, w: Watcher) -> None:
        """After a spill: the watcher catches up from storage, live from now on."""
        with self._lock:
            w.rearm_from(self._visible())

    def replay(self, w: Watcher, first: int, last: int) -> list:
        return self._replay(w, first, last)

    def count(self) -> int:
        return len(self._watchers)

    def backlog(self) -> int:
        """Revisions handed over and not delivered yet. O(1)."""
        return len(self._pending)

    def close(self) -> None:
        for w in list(self._watchers.values()):
            w.cancel()
        for cb in list(self._callbacks.values()):
            cb.cancel()
        self._callbacks.clear()
