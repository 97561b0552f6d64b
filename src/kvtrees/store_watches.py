"""The store's watch API and the replay of history for watchers (part of Store)."""

from __future__ import annotations


from . import mvcc
from .errors import ClosedError
from .mvcc import KeyValue
from .ranges import opt_key, prefix_bounds
from .txn import to_key
from .watch import DeleteEvent, PutEvent, Watcher


class StoreWatches:
    """Store's watch methods; delivery itself is the WatchHub's (watch_hub.py)."""

    def watch(self, key, start_revision=None, prev_kv=False, filters=(), range_end=None,
              progress_notify=False):
        """(events iterator, cancel). Events from start_revision (replayed from storage)
        then live, in revision order, exactly once."""
        w = self._add_watch(to_key(key), None if range_end is None else to_key(range_end),
                            start_revision, prev_kv, filters)
        return w, w.cancel

    def watch_prefix(self, key_prefix, **kwargs):
        p, end = prefix_bounds(key_prefix)
        return self.watch(p, range_end=end, **kwargs)

    def watch_range(self, range_start, range_end, **kwargs):
        return self.watch(range_start, range_end=range_end, **kwargs)

    def watch_once(self, key, timeout=None, **kwargs):
        """The first event on key; TimeoutError if none within timeout seconds."""
        w, cancel = self.watch(key, **kwargs)
        try:
            ev = w.get(timeout)
            if ev is None:
                raise ClosedError("watch ended before an event arrived")
            return ev
        finally:
            cancel()

    def watch_prefix_once(self, key_prefix, timeout=None, **kwargs):
        p = to_key(key_prefix)
        return self.watch_once(p, timeout, range_end=mvcc.prefix_end(p) or b"\x00", **kwargs)

    def add_watch_callback(self, key, callback, **kwargs) -> int:
        """Call callback(event) from a thread for each event (callback(error) if the watch
        ends with one); returns a watch id for cancel_watch()."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        k = to_key(key)
        w = self._add_watch(k, opt_key(kwargs.pop("range_end", None)),
                            kwargs.pop("start_revision", None), kwargs.pop("prev_kv", False),
                            kwargs.pop("filters", ()))
        if kwargs:
            raise TypeError("unexpected arguments: %s" % ", ".join(sorted(kwargs)))
        return self._hub.add_callback(w, callback)

    def add_watch_prefix_callback(self, key_prefix, callback, **kwargs) -> int:
        p = to_key(key_prefix)
        return self.add_watch_callback(p, callback, range_end=mvcc.prefix_end(p) or b"\x00",
                                       **kwargs)

    def cancel_watch(self, watch_id: int) -> None:
        self._hub.cancel(watch_id)

    def _add_watch(self, key, end, start_revision, prev_kv, filters) -> Watcher:
        self._check_open()
        return self._hub.add(key, end, start_revision, prev_kv, filters, self._compact_rev)

    def _replay(self, w: Watcher, first: int, last: int) -> list:
        """Events of revisions [first, last] for watcher w, read from the revision log."""
        self._check_open()
        self._check_compacted(first)
        groups: list = []
        for rk, key in self._eng.items(mvcc.revlog_key(first, 0), mvcc.revlog_key(last + 1, 0)):
            key = bytes(key)
            if not w.matches(key):
                continue
            rev = int.from_bytes(rk[1:9], "big")
            if not groups or groups[-1][0] != rev:
                groups.append((rev, []))
            groups[-1][1].append(self._replay_event(key, rev, w.prev_kv))
        self._check_compacted(first)   # compaction may have removed entries meanwhile
        return groups

    def _replay_event(self, key: bytes, rev: int, want_prev: bool):
        ev = self._eng.get(mvcc.kv_key(key, rev))
        prev = None
        if want_prev:
            p = self._live(key, rev - 1)
            prev = p.to_kv() if p else None
        if ev is None:          # a tombstone removed by compaction at exactly this revision
            return DeleteEvent(KeyValue(key, b"", 0, rev, 0, 0), prev)
        e = mvcc.decode_entry(mvcc.kv_key(key, rev), ev)
        if e.tombstone:
            return DeleteEvent(KeyValue(key, b"", 0, rev, 0, 0), prev)
        return PutEvent(e.to_kv(), prev)
