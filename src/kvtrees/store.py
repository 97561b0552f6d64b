"""The MVCC store with etcd semantics (docs/API.md section 3), over one engine.

Concurrency: one writer lock serializes revision assignment and the engine batch that
makes a revision durable; reads take no lock (they read at a fixed revision from the
engine, whose iterators are safe under concurrent writes). Key layout: see mvcc.py and
docs/STORE.md.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading
from typing import Any, Iterator, NamedTuple, Optional

from . import mvcc
from .errors import (ClosedError, CompactedError, CorruptionError, FutureRevisionError,
                     KvtreesError, LeaseNotFoundError, NoSpaceError, TooLargeError)
from .lease import MIN_TTL, Lease, LeaseTable
from .mvcc import Entry, KeyValue, RangeResult, PutResult, DeleteResult
from .mvcc_core import PREV_UNKNOWN, open_core
from . import ranges, txn_codec
from .requests import (CompactRequest, CompactStepRequest, DeleteRangeRequest,
                       LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
                       SaveRevisionRequest, TxnRequest)
from .txn import (MAX_REQUEST_BYTES, Compare, Delete, Get, Put, Transactions, Txn,
                  to_key, to_lease_id, to_value, validate_txn)
from .watch import DeleteEvent, PutEvent, Watcher
from .watch_hub import WatchHub

__all__ = ["Store", "Status", "open", "KeyValue", "RangeResult", "PutResult",
           "DeleteResult"]

STORE_OPTIONS = ("quota_bytes", "min_lease_ttl", "watch_queue_limit", "compact_batch")
_REQUEST_OVERHEAD = 16   # bytes counted per put beyond key and value (etcd-like framing)
# keys and values up to these sizes pass every size check: put skips them
_FAST_KEY = (mvcc.MAX_ENGINE_KEY - 11) // 2
_FAST_VALUE = MAX_REQUEST_BYTES - _FAST_KEY - _REQUEST_OVERHEAD
_new_tuple = tuple.__new__     # a named tuple without its generated __new__


class Status(NamedTuple):
    revision: int
    compact_revision: int
    db_size: int
    engine: str
    leases: int
    watchers: int
    version: str


def open(path, engine: Optional[str] = None, **options) -> "Store":
    """Open (creating if missing) the MVCC store in directory `path`; engine None opens
    it with the directory's own engine (btree for a new one), as open_engine() does.

    Store options: quota_bytes (0: none), min_lease_ttl (etcd's 2 s), watch_queue_limit
    (revisions buffered per watcher before it catches up from storage), compact_batch
    (revision-log entries per compaction step). Everything else goes to open_engine().
    """
    import kvtrees
    store_opts = {k: options.pop(k) for k in STORE_OPTIONS if k in options}
    snap_opts = {k: v for k, v in options.items() if k != "read_only"}
    group_sync = _store_syncs(options)
    if group_sync:
        options["sync"] = "none"      # the store fsyncs itself, outside its writer lock
    eng = kvtrees.open_engine(path, engine=engine, **options)
    try:
        name = _engine_name(eng, engine)

        def factory(dest):
            return kvtrees.open_engine(dest, engine=name, **snap_opts)
        return Store(eng, engine_name=name, engine_factory=factory,
                     read_only=bool(options.get("read_only")), group_sync=group_sync,
                     **store_opts)
    except BaseException:
        eng.close()
        raise


def _store_syncs(options: dict) -> bool:
    """True when sync="commit" is asked of a writable store: the store then opens its
    engine with sync="none" and makes each write durable itself (Store._writing), so the
    fsync wait happens outside the writer lock and concurrent writers share fsyncs."""
    obj = options.get("options")
    sync = options.get("sync", getattr(obj, "sync", "commit"))
    read_only = options.get("read_only", getattr(obj, "read_only", False))
    return sync == "commit" and not read_only


def _engine_name(eng, requested) -> str:
    for attr in ("engine", "engine_name", "name"):
        v = getattr(eng, attr, None)
        if isinstance(v, str):
            return v
    return requested or "btree"


class _Write:
    """The write set of one revision: engine ops, events and an overlay that lets reads
    inside a txn see the txn's own earlier writes."""

    def __init__(self, store: "Store"):
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


class _Writing:
    """Store._writing()'s context manager (a class: cheaper than a generator one)."""
    __slots__ = ("store",)

    def __init__(self, store: "Store"):
        self.store = store

    def __enter__(self) -> None:
        store = self.store
        depth = store._write_depth
        store._wlock.acquire()
        if not depth.n:            # outermost: the core's writer lock, shared with native puts
            try:
                store._core.lock()
            except BaseException:
                store._wlock.release()
                raise
        depth.n += 1

    def __exit__(self, *exc) -> None:
        store = self.store
        depth = store._write_depth
        depth.n -= 1
        outer = not depth.n        # nested in another write: that one finishes
        if outer:
            store._core.unlock()
        store._wlock.release()
        if outer:
            store._finish_writes()


class _Depth(threading.local):
    """How deep the current thread is in Store._writing() (0: not writing)."""
    n = 0


class Store:
    """etcd's data model over one engine. Use kvtrees.open() to get one."""

    def __init__(self, engine, *, engine_name: str = "btree", engine_factory=None,
                 read_only: bool = False, quota_bytes: int = 0,
                 min_lease_ttl: int = MIN_TTL, watch_queue_limit: int = 10000,
                 compact_batch: int = 1000, group_sync: bool = False):
        for name, v in (("quota_bytes", quota_bytes), ("min_lease_ttl", min_lease_ttl),
                        ("watch_queue_limit", watch_queue_limit),
                        ("compact_batch", compact_batch)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError("%s must be a non-negative int" % name)
        self._eng = engine
        self._engine_name = engine_name
        self._engine_factory = engine_factory
        self._read_only = read_only
        self._quota = quota_bytes
        self._queue_limit = max(1, watch_queue_limit)
        self._compact_batch = max(1, compact_batch)
        self._wlock = threading.RLock()
        self._write_depth = _Depth()
        # group_sync: the engine does not fsync per commit; _writing() syncs after the
        # writer lock is released (see docs/STORE.md, "Durability and group commit")
        self._group_sync = group_sync
        self._compact_lock = threading.Lock()
        self._closed = False
        self.transactions = Transactions()
        # the revision counters (see mvcc_core): _head, the newest revision committed
        # to the engine (writers build on it); _rev, the newest revision readers may see.
        # With group_sync, _rev moves to a revision only once its log record is fsynced,
        # so no read, header or watch event shows a write that a crash could still lose.
        head = self._load_revision()
        self._core = open_core(engine, head, group_sync)
        self._native = self._core.native
        self._hub = WatchHub(self._core.visible, self._replay, self._live, head + 1,
                             self._queue_limit, PREV_UNKNOWN)
        self._compact_rev = self._meta_int(mvcc.META_COMPACT, 0)
        self._leases = LeaseTable(self._expire_lease, min_lease_ttl)
        self._load_leases()
        if not read_only:
            if self._meta_int(mvcc.META_COMPACT_DONE, 0) < self._compact_rev:
                self._finish_compaction()      # resume a compaction cut short by a crash
            self._leases.start()

    # ------------------------------------------------------------ plumbing
    @property
    def _rev(self) -> int:
        return self._core.visible()

    @property
    def _head(self) -> int:
        return self._core.head()

    def _meta_int(self, name: bytes, default: int) -> int:
        v = self._eng.get(name)
        if v is None:
            return default
        if len(v) != 8:
            raise CorruptionError("store metadata %r is %d bytes, expected 8" % (name, len(v)))
        return int.from_bytes(v, "big")

    def _load_revision(self) -> int:
        """The current revision: that of the newest revision-log entry (every revision
        writes one in the same batch, and compaction keeps those at and above its
        target), or META_REVISION, which stores written before that rule kept, or 1."""
        rev = self._meta_int(mvcc.META_REVISION, 1)
        for rk, _ in self._eng.items(mvcc.REVLOG, mvcc.REVLOG + b"\xff", reverse=True):
            if len(rk) != 13:
                raise CorruptionError("store: malformed revision-log entry %r" % (rk,))
            return max(rev, int.from_bytes(rk[1:9], "big"))
        return rev

    def _load_leases(self) -> None:
        for ek, ev in self._eng.items(mvcc.LEASE, mvcc.LEASE + b"\xff" * 9):
            if len(ek) != 9 or len(ev) != 8:
                raise CorruptionError("malformed lease record %r" % (ek,))
            lid = int.from_bytes(ek[1:], "big")
            self._leases.add(lid, int.from_bytes(ev, "big"))
            self._core.lease_add(lid)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("store is closed")

    def _check_quota(self) -> None:
        if not self._quota:
            return
        st = self._eng.stats()
        if st.get("file_size", 0) + st.get("wal_size", 0) >= self._quota:
            raise NoSpaceError("database space exceeded (quota %d bytes)" % self._quota)

    def _read_rev(self, revision) -> int:
        """Validate a read revision (None/0: current)."""
        self._check_open()
        cur = self._rev
        if revision is None or revision == 0:
            return cur
        if isinstance(revision, bool) or not isinstance(revision, int):
            raise TypeError("revision must be an int")
        if revision < 0:
            raise ValueError("revision must be >= 0")
        if revision > cur:
            raise FutureRevisionError("required revision %d is a future revision (current %d)"
                                      % (revision, cur))
        self._check_compacted(revision)
        return revision

    def _check_compacted(self, revision: int) -> None:
        if revision < self._compact_rev:
            raise CompactedError("required revision %d has been compacted (compacted at %d)"
                                 % (revision, self._compact_rev), self._compact_rev)

    def _check_key_size(self, key: bytes) -> None:
        if 2 * len(key) + 11 <= mvcc.MAX_ENGINE_KEY:   # fits even if every byte is NUL
            return
        if len(mvcc.kv_key(key, 0)) > mvcc.MAX_ENGINE_KEY:
            raise TooLargeError("key of %d bytes is too long for the store" % len(key))

    def _commit(self, w: _Write, extra: Optional[dict] = None) -> None:
        """Make a write set durable in one engine batch (caller holds the writer lock)."""
        ops = dict(w.ops)
        if extra:
            ops.update(extra)
        # (no META_REVISION write: the newest revision-log entry is the revision, see
        # _load_revision)
        if not ops:
            return
        with self._eng.batch() as b:
            for k, v in ops.items():
                if v is None:
                    b.delete(k)
                else:
                    b.put(k, v)
        if w.events:
            self._hub.record(w.rev, w.events)   # delivered once visible
            core = self._core
            for k in w.overlay:
                core.note(k, w.rev)
            core.set_head(w.rev)

    # ------------------------------------------------------------ point reads
    def _latest(self, key: bytes, rev: int) -> Optional[Entry]:
        """Newest version of key <= rev (tombstones included), or None: one C call (one
        engine seek) on a native engine."""
        return self._core.get(key, rev)

    def _live(self, key: bytes, rev: int) -> Optional[Entry]:
        e = self._core.get(key, rev)
        return None if e is None or e.tombstone else e

    def _writing(self) -> "_Writing":
        """The writer lock around assigning a revision and committing its batch; on exit,
        outside the lock: wait until the commit is durable, then deliver its watch events.

        With group_sync the wait is Engine.sync() (kvt_sync: one fsync covers every commit
        logged so far, and concurrent callers share it), so N writer threads pay about one
        fsync per group instead of one each behind the lock. Readers see a revision only once
        it is durable (_rev trails _head until the sync returns); the writer's call
        returns, and watchers hear of it, only after that too."""
        return _Writing(self)

    def _finish_writes(self) -> None:
        # upto is read before the sync: its record is already in the log, so the sync
        # (which covers every record logged when it starts) makes it durable
        upto = self._head
        if self._group_sync:
            try:
                self._eng.sync()
            except ClosedError:
                if not self._closed:
                    raise
                # close() raced us: it checkpointed (made durable) under the writer lock
            self._core.publish(upto)         # durable now: visible to readers
        self._hub.publish()

    @property
    def revision(self) -> int:
        self._check_open()
        return self._rev

    @property
    def compact_revision(self) -> int:
        self._check_open()
        return self._compact_rev

    # ------------------------------------------------------------ reads
    def get(self, key, revision=None, serializable=False):
        """(value, KeyValue) of key at revision (default: current), (None, None) if absent.
        O(log n): one native call (one engine seek) on a native engine."""
        k = key if type(key) is bytes and key else to_key(key)
        rev = self._read_rev(revision)
        kv = self._core.get_kv(k, rev)
        if rev < self._compact_rev:     # compacted meanwhile: the read may be partial
            self._check_compacted(rev)
        return (kv.value, kv) if kv is not None else (None, None)

    def range(self, key, range_end=None, revision=None, limit=0, count_only=False,
              keys_only=False, sort_order=None, sort_target="key", min_mod_revision=None,
              max_mod_revision=None, min_create_revision=None,
              max_create_revision=None) -> RangeResult:
        """etcd's Range: range_end None = the single key, b"\\0" = every key >= key."""
        start = to_key(key)
        end = None if range_end is None else to_key(range_end)
        self._check_open()
        header_rev = self._rev      # the read is at header_rev (by default), so a watch
        rev = self._read_rev(revision or header_rev)   # from header_rev + 1 misses nothing
        filt = ranges.revision_filter(min_mod_revision, max_mod_revision, min_create_revision,
                                max_create_revision)
        kvs, count, more = ranges.select(self._kvs(start, end, rev, sort_order, sort_target,
                                             ranges.strip_early(keys_only, sort_target)),
                                   limit, count_only, keys_only, sort_order, sort_target,
                                   filt)
        self._check_compacted(rev)
        return RangeResult(kvs, count, more, header_rev)

    def _kvs(self, start, end, rev, sort_order=None, sort_target="key", keys_only=False):
        """KeyValues of [start, end) at rev (end None: the single key start)."""
        if end is None:
            e = self._live(start, rev)
            return iter([e.to_kv(keys_only)] if e else [])
        reverse = ranges.order(sort_order, sort_target) == "descend" and sort_target == "key"
        return mvcc.scan_kvs(self._eng, start, None if end == b"\x00" else end, rev, reverse,
                             keys_only)

    def _iter_range(self, start, end, revision, sort_order, sort_target, keys_only, limit,
                    **filters) -> Iterator:
        """Validate everything and fix the read revision now, so bad arguments, a closed
        store and compacted/future revisions raise at the call (as etcd's unary Range
        does, and python-etcd3's before the first item); the iterator then streams."""
        limit = ranges.check_limit(limit)
        rev = self._read_rev(revision)
        order = ranges.order(sort_order, sort_target)
        filt = ranges.revision_filter(**filters)
        if sort_target == "key" and filt is None:
            return self._stream(start, end, rev, order, keys_only, limit)
        kvs, _, _ = ranges.select(self._kvs(start, end, rev, order, sort_target,
                                      ranges.strip_early(keys_only, sort_target)),
                            limit, False, keys_only, order, sort_target, filt)
        self._check_compacted(rev)
        return iter([(kv.value, kv) for kv in kvs])

    def _stream(self, start, end, rev, order, keys_only, limit) -> Iterator:
        """Key-ordered (value, KeyValue) pairs at rev: memory stays flat however many
        keys match."""
        n = 0
        for kv in self._kvs(start, end, rev, order, "key", keys_only):
            if limit and n >= limit:
                break
            n += 1
            yield kv.value, kv
        self._check_compacted(rev)

    def get_prefix(self, key_prefix, revision=None, sort_order=None, sort_target="key",
                   keys_only=False, limit=None, **filters) -> Iterator:
        p, end = _prefix_bounds(key_prefix)
        ranges.check_sort(sort_order, sort_target)
        return self._iter_range(p, end, revision, sort_order, sort_target, keys_only, limit,
                                **filters)

    def get_range(self, range_start, range_end, revision=None, sort_order=None,
                  sort_target="key", keys_only=False, limit=None, **filters) -> Iterator:
        s, e = to_key(range_start), to_key(range_end)
        ranges.check_sort(sort_order, sort_target)
        return self._iter_range(s, e, revision, sort_order, sort_target, keys_only, limit,
                                **filters)

    def get_all(self, revision=None, sort_order=None, sort_target="key", keys_only=False,
                limit=None, **filters) -> Iterator:
        ranges.check_sort(sort_order, sort_target)
        return self._iter_range(b"\x00", b"\x00", revision, sort_order, sort_target,
                                keys_only, limit, **filters)

    # ------------------------------------------------------------ writes
    def put(self, key, value, lease=None, prev_kv=False) -> PutResult:
        """Set key to value at a new revision; durable on return with sync="commit".
        O(log n); without a lease, one native call that releases the GIL throughout."""
        k = key if type(key) is bytes and key else to_key(key)
        v = value if type(value) is bytes else to_value(value)
        if len(k) > _FAST_KEY or len(v) > _FAST_VALUE:
            self._check_put(k, v)
        lid = 0 if lease is None else to_lease_id(lease)
        return self.apply(_new_tuple(PutRequest, (k, v, lid, prev_kv)))

    # ------------------------------------------------------------ the apply path
    def apply(self, req):
        """Apply one write request (kvtrees.requests): every write of the store goes
        through here. Deterministic: the request carries every choice (lease ids, the
        lease found expired, compaction targets), so the same requests in the same order
        give the same revisions and data. Returns what the public call returns."""
        try:
            handler = self._appliers[type(req)]
        except KeyError:
            raise TypeError("not a store write request: %r" % (req,)) from None
        return handler(self, req)

    def _apply_put(self, req: PutRequest) -> PutResult:
        k, v, lid, prev_kv = req
        if self._native:
            return self._put_native(k, v, lid, prev_kv)
        with self._writing():
            self._check_open()
            self._check_lease(lid)
            self._check_quota()
            w = _Write(self)
            prev = w.put(k, v, lid)
            self._commit(w)
            return PutResult(w.rev, prev.to_kv() if prev and prev_kv else None)

    def _put_native(self, k: bytes, v: bytes, lid: int, prev_kv: bool) -> PutResult:
        """The put hot path: kvt_mvcc_put does the read, the revision, the commit and the
        fsync wait (and refuses a lease that is not live: the core keeps the live set);
        Python hands the change to the watchers, if any."""
        if self._closed:
            raise ClosedError("store is closed")
        if self._quota:
            self._check_quota()
        hub = self._hub
        rev, create, version, prev = self._core.put(k, v, lid, prev_kv or hub.watched())
        hub.hand_over(rev, lambda: [(Entry(k, rev, False, create, version, lid, v), prev)])
        return _new_tuple(PutResult, (rev, prev.to_kv() if prev_kv and prev else None))

    def _check_put(self, k: bytes, v: bytes) -> None:
        self._check_key_size(k)
        if len(k) + len(v) + _REQUEST_OVERHEAD > MAX_REQUEST_BYTES:
            raise TooLargeError("request is too large (%d bytes > %d)"
                                % (len(k) + len(v), MAX_REQUEST_BYTES))

    def _check_lease(self, lid: int) -> None:
        if lid and lid not in self._leases:
            raise LeaseNotFoundError("requested lease %#x not found" % lid)

    def delete(self, key, prev_kv=False, return_response=False):
        """Delete one key: True if it existed (DeleteResult with return_response).
        O(log n); one native call (a one-op txn) on a native engine."""
        res = self.apply(DeleteRangeRequest(to_key(key), None, prev_kv))
        return res if return_response else res.deleted > 0

    def delete_prefix(self, prefix, prev_kv=False) -> DeleteResult:
        return self.apply(DeleteRangeRequest(*_prefix_bounds(prefix), prev_kv))

    def delete_range(self, range_start, range_end, prev_kv=False) -> DeleteResult:
        return self.apply(DeleteRangeRequest(to_key(range_start), to_key(range_end), prev_kv))

    def _apply_delete_range(self, req: DeleteRangeRequest) -> DeleteResult:
        """prev_kvs only when asked, as etcd's DeleteRange (prev_kv=true). One key on a
        native engine: a one-op native txn."""
        start, end, prev_kv = req
        if end is None and self._native:
            op = Delete(start, None, prev_kv)
            _, (res,) = self._txn_native(
                txn_codec.encode([], [op], [], self._hub.watched()), [op], [])
            return res
        with self._writing():
            self._check_open()
            w = _Write(self)
            prevs = [w.delete(e.key) for e in w.live_range(start, end)]
            self._commit(w)
            return DeleteResult(len(prevs), [p.to_kv() for p in prevs] if prev_kv else [],
                                self._head)

    def put_if_not_exists(self, key, value, lease=None) -> bool:
        t = self.transactions
        ok, _ = self.transaction([t.create(key) == 0], [t.put(key, value, lease)], [])
        return ok

    def replace(self, key, initial_value, new_value) -> bool:
        t = self.transactions
        ok, _ = self.transaction([t.value(key) == initial_value], [t.put(key, new_value)], [])
        return ok

    # ------------------------------------------------------------ transactions
    def transaction(self, compare, success=None, failure=None):
        """Atomically: if every compare holds run success, else failure.
        Returns (succeeded, responses): PutResult / [(value, KeyValue)] / DeleteResult /
        (succeeded, responses) for a nested txn, one per op of the taken branch."""
        compare, success, failure = list(compare), list(success or ()), list(failure or ())
        size = validate_txn(compare, success, failure)
        if size > MAX_REQUEST_BYTES:
            raise TooLargeError("request is too large (%d bytes > %d)"
                                % (size, MAX_REQUEST_BYTES))
        for op in _all_puts(success + failure):
            self._check_key_size(op.key)
        return self.apply(TxnRequest(compare, success, failure))

    def _apply_txn(self, req: TxnRequest):
        compare, success, failure = req
        if self._native and not self._quota:
            req = txn_codec.encode(compare, success, failure, self._hub.watched())
            if req is not None:
                return self._txn_native(req, success, failure)
        with self._writing():
            self._check_open()
            w = _Write(self)
            ok, responses = self._run_txn(w, compare, success, failure)
            if w.has_puts:
                self._check_quota()
            self._commit(w)
            return ok, _fix_revisions(responses, self._head)

    def _txn_native(self, req: bytes, success: list, failure: list):
        """A txn of single-key compares and ops: one native call (kvt_mvcc_txn)."""
        if self._closed:
            raise ClosedError("store is closed")
        ok, responses, rev, changes = txn_codec.decode(self._core.txn(req), success,
                                                       failure, PREV_UNKNOWN)
        if changes:
            self._hub.hand_over(rev, lambda: changes)
        return ok, responses

    def _run_txn(self, w: _Write, compare, success, failure):
        ok = all(c.holds(w.current(c.key)) for c in compare)   # Entry reads as a KeyValue
        responses = [self._run_op(w, op) for op in (success if ok else failure)]
        return ok, responses

    def _run_op(self, w: _Write, op):
        if isinstance(op, Put):
            self._check_lease(op.lease)
            prev = w.put(op.key, op.value, op.lease)
            return PutResult(w.rev, prev.to_kv() if prev and op.prev_kv else None)
        if isinstance(op, Delete):
            prevs = [w.delete(e.key) for e in w.live_range(op.key, op.range_end)]
            return DeleteResult(len(prevs), [p.to_kv() for p in prevs] if op.prev_kv else [],
                                None)
        if isinstance(op, Get):
            return self._txn_get(w, op)
        return self._run_txn(w, op.compare, op.success, op.failure)

    def _txn_get(self, w: _Write, op: Get) -> list:
        """A txn's range: at the txn's own state (its earlier writes included), or, with
        revision=, at that committed revision (etcd's RequestRange.revision)."""
        kw = dict(op.kwargs)
        keys_only = kw.pop("keys_only", False)
        sort_order, sort_target = kw.pop("sort_order", None), kw.pop("sort_target", "key")
        limit = kw.pop("limit", 0) or 0
        revision = kw.pop("revision", None)
        if revision:
            rev = self._read_rev(revision)
            entries = self._kvs(op.key, op.range_end, rev)
        else:
            rev, entries = None, iter(w.live_range(op.key, op.range_end))
        kvs, _, _ = ranges.select(entries, limit, False, keys_only, sort_order, sort_target,
                            ranges.revision_filter(**kw))
        if rev is not None:
            self._check_compacted(rev)
        return [(kv.value, kv) for kv in kvs]

    # ------------------------------------------------------------ compaction
    def compact(self, revision: int, physical: bool = True) -> None:
        """Drop versions <= revision except each live key's latest. Reads below revision
        raise CompactedError at once; the physical work runs in bounded batches that
        release the writer lock in between, and resumes on open after a crash."""
        if isinstance(revision, bool) or not isinstance(revision, int):
            raise TypeError("revision must be an int")
        if revision < 0:
            raise ValueError("revision must be >= 0")
        self.apply(CompactRequest(revision))
        if physical:
            self._finish_compaction()

    def _apply_compact(self, req: CompactRequest) -> None:
        revision = req.revision
        with self._writing():
            self._check_open()
            if revision <= self._compact_rev:
                raise CompactedError("required revision %d has been compacted" % revision,
                                     self._compact_rev)
            if revision > self._rev:
                raise FutureRevisionError("required revision %d is a future revision"
                                          % revision)
            with self._eng.batch() as b:    # persist the target first: resumable
                b.put(mvcc.META_COMPACT, mvcc.be64(revision))
            self._compact_rev = revision

    def _finish_compaction(self) -> None:
        with self._compact_lock:
            target = self._compact_rev
            done = self._meta_int(mvcc.META_COMPACT_DONE, 0)
            if done >= target:
                return
            while self.apply(CompactStepRequest(target, mvcc.revlog_key(target, 0))):
                pass
            self.apply(CompactStepRequest(target, mvcc.revlog_key(target + 1, 0), True))

    def _apply_compact_step(self, req: CompactStepRequest) -> bool:
        """Process up to compact_batch revision-log entries below `upto`; False when none
        were left. Log entries below target go; the ones at target stay (a watch may start
        at the compacted revision) but their keys are processed too."""
        target, upto, final = req
        with self._writing():
            self._check_open()
            limit = None if final else self._compact_batch
            entries = list(itertools.islice(self._eng.items(mvcc.REVLOG, upto), limit))
            ops: dict[bytes, Optional[bytes]] = {}
            for rk, key in entries:
                rev = int.from_bytes(rk[1:9], "big")
                if rev < target:
                    ops[rk] = None
                self._compact_key(bytes(key), rev, target, ops)
            if final:
                ops[mvcc.META_COMPACT_DONE] = mvcc.be64(target)
            if ops:
                with self._eng.batch() as b:
                    for k, v in ops.items():
                        b.delete(k) if v is None else b.put(k, v)
            return bool(entries)

    def _compact_key(self, key: bytes, rev: int, target: int, ops: dict) -> None:
        """If rev is key's newest version <= target, delete every older version (and the
        version itself if it is a tombstone)."""
        e = self._latest(key, target)
        if e is None or e.mod != rev:
            return
        for ek in mvcc.older_versions(self._eng, key, rev):
            ops[ek] = None
        if e.tombstone:
            ops[mvcc.kv_key(key, rev)] = None

    # ------------------------------------------------------------ watches
    def watch(self, key, start_revision=None, prev_kv=False, filters=(), range_end=None,
              progress_notify=False):
        """(events iterator, cancel). Events from start_revision (replayed from storage)
        then live, in revision order, exactly once."""
        w = self._add_watch(to_key(key), None if range_end is None else to_key(range_end),
                            start_revision, prev_kv, filters)
        return w, w.cancel

    def watch_prefix(self, key_prefix, **kwargs):
        p, end = _prefix_bounds(key_prefix)
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
        w = self._add_watch(k, _opt_key(kwargs.pop("range_end", None)),
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

    # ------------------------------------------------------------ leases
    def lease(self, ttl: int, lease_id: Optional[int] = None) -> Lease:
        """Grant a lease of at least ttl seconds (etcd's minimum: 2)."""
        granted = self._leases.effective_ttl(ttl)
        if lease_id is not None:
            lease_id = to_lease_id(lease_id)
        with self._writing():           # the id is chosen here, outside apply()
            self._check_open()
            return self.apply(LeaseGrantRequest(lease_id or self._leases.new_id(), granted))

    def _apply_lease_grant(self, req: LeaseGrantRequest) -> Lease:
        lease_id, granted = req
        with self._writing():
            self._check_open()
            self._check_quota()
            if lease_id in self._leases:
                raise ValueError("lease %#x already exists" % lease_id)
            with self._eng.batch() as b:
                b.put(mvcc.LEASE + mvcc.be64(lease_id), mvcc.be64(granted))
            self._leases.add(lease_id, granted)
            self._core.lease_add(lease_id)
        return Lease(self, lease_id, granted)

    def get_lease(self, lease_id) -> Lease:
        lid = to_lease_id(lease_id)
        self._check_open()
        if lid not in self._leases:
            raise LeaseNotFoundError("requested lease %#x not found" % lid)
        return Lease(self, lid, self._leases.granted_ttl(lid))

    def leases(self) -> list:
        self._check_open()
        return [Lease(self, lid, self._leases.granted_ttl(lid)) for lid in self._leases.ids()]

    def refresh_lease(self, lease_id) -> int:
        lid = to_lease_id(lease_id)
        self._check_open()
        try:
            return self._leases.refresh(lid)
        except KeyError:
            raise LeaseNotFoundError("requested lease %#x not found" % lid) from None

    def revoke_lease(self, lease_id) -> bool:
        """Revoke: delete the lease and (in one revision) every key attached to it."""
        return self.apply(LeaseRevokeRequest(to_lease_id(lease_id)))

    def _apply_lease_revoke(self, req: LeaseRevokeRequest) -> bool:
        lid = req.lease_id
        with self._writing():
            self._check_open()
            if lid not in self._leases:
                raise LeaseNotFoundError("requested lease %#x not found" % lid)
            self._revoke(lid)
        return True

    def _revoke(self, lid: int) -> None:
        w = _Write(self)
        extra: dict = {mvcc.LEASE + mvcc.be64(lid): None}
        pfx = mvcc.ATTACH + mvcc.be64(lid)
        for ak, _ in list(self._eng.items(pfx, mvcc.ATTACH + mvcc.be64(lid + 1))):
            key = bytes(ak[9:])
            e = w.current(key)
            if e is not None and e.lease == lid:
                w.delete(key)
            extra[bytes(ak)] = None
        self._commit(w, extra)
        self._leases.remove(lid)
        self._core.lease_remove(lid)

    def _expire_lease(self, lid: int) -> None:
        """The lease thread's decision (its clock, here, outside apply): still expired
        under the writer lock, so a refresh that just happened is not undone."""
        with self._writing():
            if self._closed or lid not in self._leases or not self._leases.expired(lid):
                return
            self.apply(LeaseRevokeRequest(lid))

    def lease_granted_ttl(self, lease_id) -> int:
        """Granted TTL of a lease, 0 once expired or revoked. O(1)."""
        self._check_open()
        return self._leases.granted_ttl(to_lease_id(lease_id))

    def lease_remaining_ttl(self, lease_id) -> int:
        """Whole seconds left (rounded down, as etcd), -1 once expired or revoked. O(1)."""
        self._check_open()
        return self._leases.remaining(to_lease_id(lease_id))

    def lease_keys(self, lease_id) -> list:
        """Keys attached to a lease, in key order. O(keys attached)."""
        lid = to_lease_id(lease_id)
        self._check_open()
        pfx = mvcc.ATTACH + mvcc.be64(lid)
        return [bytes(ak[9:]) for ak, _ in self._eng.items(pfx, mvcc.ATTACH + mvcc.be64(lid + 1))]

    # ------------------------------------------------------------ concurrency recipes
    def lock(self, name, ttl: int = 60):
        from .concurrency import Lock
        return Lock(self, name, ttl)

    def election(self, name, ttl: int = 60):
        from .concurrency import Election
        return Election(self, name, ttl)

    # ------------------------------------------------------------ maintenance
    def hash_kv(self, revision: int = 0):
        """(CRC32C over every stored version <= revision, compact_revision, revision):
        equal for equal histories on both engines."""
        rev = self._read_rev(revision)
        crc = 0
        upd = _crc32c()
        for ek, ev in self._eng.items(mvcc.KV, mvcc.KV_END):
            _, mod = mvcc.split_kv_key(ek)
            if mod <= rev:
                crc = upd(crc, struct.pack(">II", len(ek), len(ev)) + bytes(ek) + bytes(ev))
        self._check_compacted(rev)
        return crc, self._compact_rev, rev

    def status(self) -> Status:
        self._check_open()
        st = self._eng.stats()
        import kvtrees
        return Status(self._rev, self._compact_rev,
                      int(st.get("file_size", 0)) + int(st.get("wal_size", 0)),
                      self._engine_name, len(self._leases.ids()), self._hub.count(),
                      getattr(kvtrees, "__version__", "0"))

    def engine_stats(self) -> dict:
        """The engine's I/O, cache and tree counters (Engine.stats(): bytes written and
        read, fsyncs, cache hits and misses, ...). O(1)."""
        self._check_open()
        return self._eng.stats()

    def snapshot(self, dest_path) -> None:
        """Write a consistent copy of the store (all keys, history, leases) to a new
        directory that kvtrees.open() can open. Holds the writer lock while copying."""
        if self._engine_factory is None:
            raise ValueError("this store was not opened by kvtrees.open(): no engine factory")
        dest = os.fspath(dest_path)
        if os.path.exists(dest) and os.listdir(dest):
            raise FileExistsError("snapshot destination %r is not empty" % dest)
        with self._writing():   # no write (native puts included) while copying
            self._check_open()
            out = self._engine_factory(dest)
            try:
                batch: list = []
                for k, v in self._eng.items():
                    batch.append((bytes(k), bytes(v)))
                    if len(batch) >= 1000:
                        _write_all(out, batch)
                        batch = []
                _write_all(out, batch)
                out.checkpoint()
            finally:
                out.close()

    def check(self) -> None:
        """Engine check plus the store's own invariants; raises CorruptionError."""
        self._check_open()
        self._eng.check()
        compact_done = self._meta_int(mvcc.META_COMPACT_DONE, 0)
        for ek, ev in self._eng.items(mvcc.KV, mvcc.KV_END):
            try:
                e = mvcc.decode_entry(bytes(ek), bytes(ev))
            except ValueError as err:
                raise CorruptionError("store: %s" % err) from None
            if e.mod > self._head:
                raise CorruptionError("store: key %r has mod_revision %d > revision %d"
                                      % (e.key, e.mod, self._head))
            if not e.tombstone and not (e.version >= 1 and 0 < e.create <= e.mod):
                raise CorruptionError("store: key %r version %d create %d mod %d invalid"
                                      % (e.key, e.version, e.create, e.mod))
        for rk, key in self._eng.items(mvcc.REVLOG, mvcc.REVLOG + b"\xff"):
            rev = int.from_bytes(rk[1:9], "big")
            if len(rk) != 13 or rev > self._head:
                raise CorruptionError("store: malformed revision-log entry %r" % (rk,))
            if rev > max(compact_done, self._compact_rev) and \
                    self._eng.get(mvcc.kv_key(bytes(key), rev)) is None:
                raise CorruptionError("store: revision %d names key %r, which has no "
                                      "version at that revision" % (rev, key))
        for ak, _ in self._eng.items(mvcc.ATTACH, mvcc.ATTACH + b"\xff"):
            if len(ak) < 10 or int.from_bytes(ak[1:9], "big") not in self._leases:
                raise CorruptionError("store: key attached to unknown lease %r" % (ak[:9],))

    def close(self) -> None:
        with self._wlock:
            if self._closed:
                return
            self._closed = True
            self._core.close()          # waits for native puts in flight
            self._save_revision()
        self._leases.stop()
        self._hub.close()
        self._eng.close()

    def _save_revision(self) -> None:
        """Write META_REVISION at a clean close. Open does not need it (the revision log
        has the revision), but code from before issue 4 reads only this key, so a cleanly
        closed store stays readable by it. Best effort: a failure here must not stop the
        close; the engine's own close reports real I/O trouble."""
        if self._read_only:
            return
        try:
            self._apply_save_revision(SaveRevisionRequest())
        except KvtreesError:
            pass

    def _apply_save_revision(self, req: SaveRevisionRequest) -> None:
        with self._eng.batch() as b:
            b.put(mvcc.META_REVISION, mvcc.be64(self._head))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if not self._closed:
                self._leases.stop()
        except Exception:
            pass


# ---------------------------------------------------------------- helpers

Store._appliers = {
    PutRequest: Store._apply_put, DeleteRangeRequest: Store._apply_delete_range,
    TxnRequest: Store._apply_txn, LeaseGrantRequest: Store._apply_lease_grant,
    LeaseRevokeRequest: Store._apply_lease_revoke, CompactRequest: Store._apply_compact,
    CompactStepRequest: Store._apply_compact_step,
    SaveRevisionRequest: Store._apply_save_revision,
}


def _prefix_bounds(prefix) -> tuple:
    """etcd's [prefix, prefix_end) range; the empty prefix means every key."""
    if isinstance(prefix, (str, bytes, bytearray, memoryview)) and len(prefix) == 0:
        return b"\x00", b"\x00"
    p = to_key(prefix)
    return p, mvcc.prefix_end(p) or b"\x00"


def _opt_key(k):
    return None if k is None else to_key(k)


def _all_puts(ops):
    for op in ops:
        if isinstance(op, Put):
            yield op
        elif isinstance(op, Txn):
            yield from _all_puts(op.success + op.failure)


def _fix_revisions(responses, rev):
    out = []
    for r in responses:
        if isinstance(r, DeleteResult) and r.revision is None:
            r = r._replace(revision=rev)
        elif isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], bool):
            r = (r[0], _fix_revisions(r[1], rev))
        out.append(r)
    return out


def _write_all(eng, items) -> None:
    if not items:
        return
    with eng.batch() as b:
        for k, v in items:
            b.put(k, v)


_crc_fn = None


def _crc32c():
    """crc(crc, data) -> crc: the native kvt_crc32c, else the crc32c package."""
    global _crc_fn
    if _crc_fn is None:
        try:
            from ._native import lib, ffi

            def native(crc, data):
                return lib.kvt_crc32c(crc, ffi.from_buffer(data), len(data))
            _crc_fn = native
        except ImportError:
            try:
                import crc32c as _c

                def pkg(crc, data):
                    return _c.crc32c(data, crc)
            except ImportError:
                import google_crc32c as _g

                def pkg(crc, data):
                    return _g.extend(crc, data)
            _crc_fn = pkg
    return _crc_fn
