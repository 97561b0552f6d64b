"""The write set of one revision on the Python write path (ranged deletes, nested txns,
leases' revokes): engine ops, watch events, and an overlay so that reads inside a txn
see the txn's own earlier writes. Committed by Store._commit in one engine batch."""

from __future__ import annotations

from typing import Optional

from . import mvcc
from .mvcc import Entry


class WriteSet:
    """The write set of one revision: engine ops, events and an overlay that lets reads
    inside a txn see the txn's own earlier writes."""

    def __init__(self, store):
        self.store = store
        self.base = store._head
        self.rev = store._head + 1
        self.sub = 0
        self.ops: dict[bytes, Optional[bytes]] = {}
        self.events: list = []     # (entry, previous live entry): see watch_hub
        self.overlay: dict[bytes, Entry] = {}
        self.reads: dict[bytes, Optional[Entry]] = {}   # base-revision reads, memoized
        self.has_puts = False

    def current(self, key: bytes) -> Optional[Entry]:
        e = self.overlay.get(key)
        if e is not None:
            return None if e.tombstone else e
        try:
            return self.reads[key]        # a compare then a put of one key: one read
        except KeyError:
            e = self.reads[key] = self.store._live(key, self.base)
            return e

    def put(self, key: bytes, value: bytes, lease: int) -> Optional[Entry]:
        prev = self.current(key)
        create, version = (prev.create, prev.version + 1) if prev else (self.rev, 1)
        self._record(Entry(key, self.rev, False, create, version, lease, value), prev)
        self.has_puts = True
        return prev

    def delete(self, key: bytes) -> Optional[Entry]:
        prev = self.current(key)
        if prev is not None:
            self._record(Entry(key, self.rev, True, 0, 0, 0, b""), prev)
        return prev

    def live_range(self, start: bytes, end: Optional[bytes]) -> list:
        """Live entries in [start, end) as of this write set (end None: single key)."""
        if end is None:
            e = self.current(start)
            return [e] if e else []
        hi = None if end == b"\x00" else end
        found = {e.key: e for e in mvcc.scan(self.store._eng, start, hi, self.base)}
        for k, e in self.overlay.items():
            if k >= start and (hi is None or k < hi):
                found[k] = e
        return [found[k] for k in sorted(found) if not found[k].tombstone]

    def _record(self, e: Entry, prev: Optional[Entry]) -> None:
        self.ops[mvcc.kv_key(e.key, e.mod)] = mvcc.encode_entry(
            e.value, e.create, e.version, e.lease, e.tombstone)
        self.ops[mvcc.revlog_key(self.rev, self.sub)] = e.key
        self.sub += 1
        old_lease = prev.lease if prev else 0
        if old_lease != e.lease:
            if old_lease:
                self.ops[mvcc.ATTACH + mvcc.be64(old_lease) + e.key] = None
            if e.lease:
                self.ops[mvcc.ATTACH + mvcc.be64(e.lease) + e.key] = b""
        self.overlay[e.key] = e
        self.events.append((e, prev))
