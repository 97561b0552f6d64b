"""The MVCC store with etcd semantics (docs/API.md section 3), over one engine.

Concurrency: one writer lock serializes revision assignment and the engine batch that
makes a revision durable; reads take no lock (they read at a fixed revision from the
engine, whose iterators are safe under concurrent writes). Key layout: see mvcc.py and
docs/STORE.md.

This module is the Store's core: opening, the revision counters, the writer lock and
the one apply path every write goes through (puts, deletes, txns; the handlers of the
other requests live with their concept). The rest of Store is one module per concept:
store_reads (point reads and ranges), store_watches, store_leases, store_compaction,
store_maintenance (hash_kv, status, snapshot, check); write_set is the Python write
path's write set, mvcc_core the native MVCC layer's binding, watch_hub the delivery of
events, requests the write request values.
"""

from __future__ import annotations

import threading
from typing import Optional

from . import mvcc
from .errors import (ClosedError, CompactedError, CorruptionError, FutureRevisionError,
                     KeyNotFoundError, KvtreesError, LeaseNotFoundError,
                     NoSpaceError, TooLargeError)
from .lease import MIN_TTL, LeaseTable
from .mvcc import Entry, KeyValue, RangeResult, PutResult, DeleteResult
from .mvcc_core import PREV_UNKNOWN, open_core
from . import ranges, txn_codec
from .requests import (CompactRequest, CompactStepRequest, DeleteRangeRequest,
                       LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
                       SaveRevisionRequest, TxnRequest)
from .txn import (MAX_REQUEST_BYTES, Delete, Get, Put, Transactions, Txn, to_key,
                  to_lease_id, to_value, validate_txn)
from .watch import DeleteEvent, PutEvent  # noqa: F401  (kvtrees.store.PutEvent, as before)
from .watch_hub import WatchHub
from .write_set import WriteSet
from .store_compaction import StoreCompaction
from .store_leases import StoreLeases
from .store_maintenance import Status, StoreMaintenance
from .store_reads import StoreReads
from .store_watches import StoreWatches
from .ranges import prefix_bounds

__all__ = ["Store", "Status", "open", "KeyValue", "RangeResult", "PutResult",
           "DeleteResult"]

STORE_OPTIONS = ("quota_bytes", "min_lease_ttl", "watch_queue_limit", "compact_batch")
_REQUEST_OVERHEAD = 16   # bytes counted per put beyond key and value (etcd-like framing)
# keys and values up to these sizes pass every size check: put skips them
_FAST_KEY = (mvcc.MAX_ENGINE_KEY - 11) // 2
_FAST_VALUE = MAX_REQUEST_BYTES - _FAST_KEY - _REQUEST_OVERHEAD
_new_tuple = tuple.__new__     # a named tuple without its generated __new__


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


class Store(StoreReads, StoreWatches, StoreLeases, StoreCompaction, StoreMaintenance):
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
        # replicated stores (kvtrees.cluster): the Raft index of the last applied entry,
        # written in the same engine batch as that entry's effects (apply_at), and the
        # id of the thread applying one (0: none; it bypasses the native write paths,
        # which commit their own batch)
        self._applied = self._meta_int(mvcc.META_APPLIED, 0)
        self._applying = 0
        self._stamp: Optional[int] = None
        self._stamp_extra: Optional[dict] = None
        self._stamped = False
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

    def _commit(self, w: WriteSet, extra: Optional[dict] = None) -> None:
        """Make a write set durable in one engine batch (caller holds the writer lock)."""
        ops = dict(w.ops)
        if extra:
            ops.update(extra)
        if self._stamp is not None:
            self._stamp_ops(ops)
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

    def _stamp_ops(self, ops: dict) -> None:
        """Add the applied Raft index to an engine batch being built by apply_at (the
        index and the entry's effects land in one atomic batch). Writer lock held."""
        ops[mvcc.META_APPLIED] = mvcc.be64(self._stamp)
        extra = self._stamp_extra
        if extra:
            ops.update(extra)
        self._stamped = True

    def _stamp_batch(self, b) -> None:
        """As _stamp_ops, for handlers that fill an engine batch themselves."""
        if self._stamp is not None:
            ops: dict = {}
            self._stamp_ops(ops)
            for k, v in ops.items():
                b.delete(k) if v is None else b.put(k, v)

    @property
    def applied_index(self) -> int:
        """The Raft index applied last (0 for a store that is not replicated). O(1)."""
        return self._applied

    def apply_at(self, index: int, req, extra: Optional[dict] = None):
        """Apply one write request as the Raft log entry at index: its effects and the
        index (plus the engine ops in extra) are written in one atomic engine batch, so
        after a crash the store has applied exactly the entries up to applied_index. A
        request that fails (a missing lease, a compacted revision, ...) fails the same way
        on every member; the index is recorded anyway. Entries at or below applied_index
        are the caller's to skip. Runs the Python write paths: the native ones commit a
        batch of their own. O(the request's own apply)."""
        if index <= self._applied:
            raise ValueError("entry %d is already applied (applied index %d)"
                             % (index, self._applied))
        with self._writing():
            self._check_open()
            self._applying = threading.get_ident()
            self._stamp, self._stamp_extra, self._stamped = index, extra, False
            try:
                return Store.apply(self, req)
            finally:
                if not self._stamped:       # failed, or wrote nothing: stamp alone
                    with self._eng.batch() as b:
                        self._stamp_batch(b)
                self._stamp, self._stamp_extra = None, None
                self._applying = 0
                self._applied = index

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
        if self._native and not self._applying:
            return self._put_native(k, v, lid, prev_kv)
        with self._writing():
            self._check_open()
            self._check_lease(lid)
            self._check_quota()
            w = WriteSet(self)
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
        watched = hub.watched()
        rev, create, version, prev = self._core.put(k, v, lid, prev_kv or watched)
        if watched or hub.watched():   # (rev is visible now: a watcher joining after the
            # check replays it from the revision log, see WatchHub.add)
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
        return self.apply(DeleteRangeRequest(*prefix_bounds(prefix), prev_kv))

    def delete_range(self, range_start, range_end, prev_kv=False) -> DeleteResult:
        return self.apply(DeleteRangeRequest(to_key(range_start), to_key(range_end), prev_kv))

    def _apply_delete_range(self, req: DeleteRangeRequest) -> DeleteResult:
        """prev_kvs only when asked, as etcd's DeleteRange (prev_kv=true). One key on a
        native engine: a one-op native txn."""
        start, end, prev_kv = req
        if end is None and self._native and not self._applying:
            op = Delete(start, None, prev_kv)
            watched = self._hub.watched()
            _, (res,) = self._txn_native(txn_codec.encode([], [op], [], watched), [op], [],
                                         watched)
            return res
        with self._writing():
            self._check_open()
            w = WriteSet(self)
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
        if 2 * size + 11 > mvcc.MAX_ENGINE_KEY:     # else every key fits (size counts them)
            for op in _all_puts(success + failure):
                self._check_key_size(op.key)
        return self.apply(TxnRequest(compare, success, failure))

    def _apply_txn(self, req: TxnRequest):
        compare, success, failure = req
        if self._native and not self._quota and not self._applying:
            watched = self._hub.watched()
            req = txn_codec.encode(compare, success, failure, watched)
            if req is not None:
                return self._txn_native(req, success, failure, watched)
        with self._writing():
            self._check_open()
            w = WriteSet(self)
            ok, responses = self._run_txn(w, compare, success, failure)
            if w.has_puts:
                self._check_quota()
            self._commit(w)
            return ok, _fix_revisions(responses, self._head)

    def _txn_native(self, req: bytes, success: list, failure: list, watched: bool):
        """A txn of single-key compares and ops: one native call (kvt_mvcc_txn). The
        changes go to the watchers if one was there when the request was encoded or is
        there now (as _put_native: one that joins later replays the revision)."""
        if self._closed:
            raise ClosedError("store is closed")
        resp = self._core.txn(req)
        hub = self._hub
        ok, responses, rev, changes = txn_codec.decode(resp, success, failure, PREV_UNKNOWN,
                                                       watched or hub.watched())
        if changes:
            hub.hand_over(rev, lambda: changes)
        return ok, responses

    def _run_txn(self, w: WriteSet, compare, success, failure):
        ok = all(c.holds(w.current(c.key)) if c.range_end is None     # Entry reads as a
                 else c.holds_all(w.live_range(c.key, c.range_end))   # KeyValue
                 for c in compare)
        responses = [self._run_op(w, op) for op in (success if ok else failure)]
        return ok, responses

    def _run_op(self, w: WriteSet, op):
        if isinstance(op, Put):
            if op.ignore_value or op.ignore_lease:
                op = self._kept_put(w, op)
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

    @staticmethod
    def _kept_put(w: WriteSet, op: Put) -> Put:
        """A put with ignore_value / ignore_lease, given the key's current value / lease
        (as etcd: the key must exist, else the whole txn fails and writes nothing)."""
        cur = w.current(op.key)
        if cur is None:
            raise KeyNotFoundError("key not found: %r" % op.key)
        return Put(op.key, cur.value if op.ignore_value else op.value,
                   cur.lease if op.ignore_lease else op.lease, op.prev_kv)

    def _txn_get(self, w: WriteSet, op: Get) -> list:
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

    # ------------------------------------------------------------ concurrency recipes
    def lock(self, name, ttl: int = 60):
        from .concurrency import Lock
        return Lock(self, name, ttl)

    def election(self, name, ttl: int = 60):
        from .concurrency import Election
        return Election(self, name, ttl)

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
            self._stamp_batch(b)

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

