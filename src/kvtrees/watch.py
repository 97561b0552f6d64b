"""Watches: events in revision order, exactly once, across the replay/live boundary.

A watcher is registered under the store's writer lock, which fixes `live_from`, the
first revision it will receive live. Revisions [start_revision, live_from) are replayed
from the revision log in the engine (they can no longer change), later ones arrive
through a per-watcher queue filled by the committing writer. A writer never blocks on a
watcher: when a slow consumer's queue passes `queue_limit` revisions the queue is dropped
and the watcher "spills": it catches up from storage from the revision after the last one
it delivered, then registers for live events again. Memory per watcher is bounded by
`queue_limit`; a watcher that falls behind a compaction ends with CompactedError, as in
etcd.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, Optional

from .mvcc import KeyValue

_log = logging.getLogger("kvtrees.watch")

NOPUT = "noput"
NODELETE = "nodelete"
REPLAY_CHUNK = 256          # revisions read from storage per step
PROGRESS_POLL = 0.005       # seconds between looks while a progress request waits


class Event:
    """Base of PutEvent / DeleteEvent (python-etcd3 names)."""
    __slots__ = ("kv", "prev_kv")

    def __init__(self, kv: KeyValue, prev_kv: Optional[KeyValue] = None):
        self.kv = kv
        self.prev_kv = prev_kv

    key = property(lambda self: self.kv.key)
    value = property(lambda self: self.kv.value)
    mod_revision = property(lambda self: self.kv.mod_revision)
    create_revision = property(lambda self: self.kv.create_revision)
    version = property(lambda self: self.kv.version)
    lease = property(lambda self: self.kv.lease)

    def __eq__(self, other):
        return (type(self) is type(other) and self.kv == other.kv
                and self.prev_kv == other.prev_kv)

    def __repr__(self):
        return "%s(key=%r, value=%r, mod_revision=%d, version=%d)" % (
            type(self).__name__, self.key, self.value, self.mod_revision, self.version)


class Progress:
    """What Watcher.get() returns for a request_progress(revision): every event at or
    below `revision` has been returned before it."""
    __slots__ = ("revision",)

    def __init__(self, revision: int):
        self.revision = revision

    def __repr__(self):
        return "Progress(revision=%d)" % self.revision


class PutEvent(Event):
    __slots__ = ()


class DeleteEvent(Event):
    __slots__ = ()


# python-etcd3 passes etcdrpc.WatchCreateRequest.NOPUT / NODELETE: the ints 0 and 1
_FILTER_NUMBERS = {0: NOPUT, 1: NODELETE}


def _normalize_filters(filters) -> frozenset:
    out = set()
    for f in filters or ():
        if isinstance(f, int) and not isinstance(f, bool) and f in _FILTER_NUMBERS:
            out.add(_FILTER_NUMBERS[f])
            continue
        name = str(getattr(f, "name", f)).lower()
        if name not in (NOPUT, NODELETE):
            raise ValueError("unknown watch filter %r (use 'noput'/0 or 'nodelete'/1)"
                             % (f,))
        out.add(name)
    return frozenset(out)


class Watcher:
    """One watch. Iterate it for events; cancel() ends the iteration."""

    def __init__(self, hub, start: bytes, end: Optional[bytes], start_revision: int,
                 prev_kv: bool, filters, queue_limit: int):
        self._hub = hub                       # the store's WatchHub (watch_hub.py)
        self.start, self.end = start, end     # end None: single key; b"\0": from start
        self.prev_kv = prev_kv
        self.filters = _normalize_filters(filters)
        self._queue_limit = queue_limit
        self._cond = threading.Condition()
        self._queue: deque = deque()          # (revision, [events])
        self._pending: deque = deque()        # events of the revision being handed out
        self._replay_next = start_revision    # next revision to read from storage
        self._live_from = start_revision      # set by register()
        self._spilled = False
        self._cancelled = False
        self._error: Optional[BaseException] = None
        self._marks: deque = deque()          # revisions of request_progress() calls
        self.id: Optional[int] = None

    # ---- writer side (called by the watch hub, under its lock)
    def matches(self, key: bytes) -> bool:
        if self.end is None:
            return key == self.start
        if self.end == b"\x00":
            return key >= self.start
        return self.start <= key < self.end

    def push(self, revision: int, events: list) -> None:
        if revision < self._live_from:
            return
        mine = [e for e in events if self.matches(e.key)]
        if not mine:
            return
        with self._cond:
            if self._cancelled or self._spilled:
                return
            if len(self._queue) >= self._queue_limit:
                self._queue.clear()           # catch up from storage instead
                self._spilled = True
            else:
                self._queue.append((revision, mine))
            self._cond.notify_all()

    def set_live_from(self, revision: int) -> None:
        with self._cond:
            self._live_from = max(revision, self._replay_next)

    def fail(self, err: BaseException) -> None:
        with self._cond:
            self._error = err
            self._cond.notify_all()

    # ---- consumer side
    def request_progress(self, revision: int) -> None:
        """Have get() return Progress(revision) once every event at or below revision
        has been returned (in order with the events; requests are answered in the order
        made). Any thread. O(1)."""
        with self._cond:
            self._marks.append(revision)
            self._cond.notify_all()

    def _caught_up(self, revision: int) -> bool:
        """No event at or below revision is left to return: none pending, queued or to
        replay, and the hub has handed this watcher every revision up to it."""
        if self._pending:
            return False
        with self._cond:
            if self._spilled or (self._queue and self._queue[0][0] <= revision):
                return False
            if self._replay_next < self._live_from and self._replay_next <= revision:
                return False
        return self._hub.published() >= revision

    def cancel(self) -> None:
        with self._cond:
            if self._cancelled:
                return
            self._cancelled = True
            self._queue.clear()
            self._cond.notify_all()
        self._hub.unregister(self)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def __iter__(self):
        return self

    def __next__(self):
        ev = self.get(None)
        if ev is None:
            raise StopIteration
        return ev

    def get(self, timeout: Optional[float]):
        """Next event; None once cancelled; raises TimeoutError after timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._cancelled:
                return None
            if self._pending:
                return self._pending.popleft()
            if self._error is not None:
                err, self._error = self._error, None
                self._cancel_quietly()
                raise err
            if self._marks and self._caught_up(self._marks[0]):
                return Progress(self._marks.popleft())
            if self._replay_next < self._live_from:
                self._replay_step()
                continue
            if not self._wait_live(deadline):
                raise TimeoutError("no watch event within %s s" % timeout)

    def _wait_live(self, deadline) -> bool:
        with self._cond:
            while not (self._queue or self._spilled or self._cancelled or self._error):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self._marks:
                    # a progress request waits for the hub to publish its revision,
                    # which pushes nothing here unless an event matches: look again soon
                    self._cond.wait(PROGRESS_POLL if left is None
                                    else min(left, PROGRESS_POLL))
                    return True
                self._cond.wait(left)
            if self._queue:
                # take every queued revision at once: one wake-up per burst of writes,
                # not one per revision (filtering happens outside the lock)
                batch = list(self._queue)
                self._queue.clear()
                self._replay_next = batch[-1][0] + 1
            else:
                batch = None
                spilled = self._spilled
        if batch is not None:
            for _, events in batch:
                self._pending.extend(self._filter(events))
            return True
        if spilled:
            self._hub.rearm(self)
        return True

    def rearm_from(self, current_revision: int) -> None:
        """After a spill (called by the hub under its lock): replay up to
        current_revision from storage, live after it."""
        with self._cond:
            self._spilled = False
            self._queue.clear()
            self._live_from = current_revision + 1

    def _replay_step(self) -> None:
        last = min(self._live_from - 1, self._replay_next + REPLAY_CHUNK - 1)
        try:
            groups = self._hub.replay(self, self._replay_next, last)
        except BaseException as e:   # CompactedError, ClosedError
            self.fail(e)
            return
        for _, events in groups:
            self._pending.extend(self._filter(events))
        self._replay_next = last + 1

    def _filter(self, events):
        for e in events:
            if not self.matches(e.key):
                continue
            if isinstance(e, PutEvent) and NOPUT in self.filters:
                continue
            if isinstance(e, DeleteEvent) and NODELETE in self.filters:
                continue
            if not self.prev_kv and e.prev_kv is not None:
                e = type(e)(e.kv, None)
            yield e

    def _cancel_quietly(self) -> None:
        with self._cond:
            self._cancelled = True
        self._hub.unregister(self)


class CallbackWatch:
    """Runs a watcher on its own thread and hands each event (or the error that ended
    the watch) to callback."""

    def __init__(self, watcher: Watcher, callback: Callable):
        self.watcher = watcher
        self.callback = callback
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name="kvtrees-watch-%s" % watcher.id)
        self.thread.start()

    def _run(self) -> None:
        try:
            for ev in self.watcher:
                self._deliver(ev)
        except Exception as e:       # the watch ended with an error: hand it over
            self._deliver(e)         # (as python-etcd3 does)
        finally:
            # a watch that errs unregisters itself; this covers a BaseException escaping
            # the callback (SystemExit, KeyboardInterrupt), so no dead watch stays counted
            self.watcher.cancel()

    def _deliver(self, item) -> None:
        """A callback that raises is logged and the watch carries on (python-etcd3 logs
        and continues too): one bad event must not silently end every later one."""
        try:
            self.callback(item)
        except Exception:
            _log.exception("kvtrees watch %s: callback raised; the watch continues",
                           self.watcher.id)

    def cancel(self) -> None:
        self.watcher.cancel()
        if threading.current_thread() is not self.thread:
            self.thread.join(5)
