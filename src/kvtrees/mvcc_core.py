"""The store's revision counters, writer lock and per-key hot paths.

Two implementations of one small interface (see native/include/kvt_mvcc.h):

- NativeCore, over a native engine: the counters and the writer lock live in C, a point
  read is one C call (one engine seek, no Python iterator) and a put is one C call that
  reads the key's current version, assigns the revision, commits the record and (with
  durable=True) waits for the shared group fsync, all with the GIL released.
- PythonCore, for any other engine object (the tests' in-memory engine): the same
  rules in Python; put() is not offered, so the store builds every write itself.

head is the newest revision committed to the engine (writers build on it); visible is
the newest revision readers may see: with durable=True it reaches a revision only after
the fsync covering it returned.
"""

from __future__ import annotations

import threading
from typing import Optional

from . import mvcc, txn_codec
from .errors import error_from_code
from .mvcc import Entry, KeyValue

__all__ = ["open_core", "NativeCore", "PythonCore", "PREV_UNKNOWN"]

# A put's previous version that was not read (nobody asked for it): a watcher that
# wants prev_kv has it read from the engine at delivery.
PREV_UNKNOWN = object()

_BUF = 4096                 # initial per-thread value buffer; grows on demand
_BUF_KEEP = 1 << 20         # larger buffers are dropped after use


def open_core(engine, head: int, durable: bool):
    """NativeCore for a native engine, PythonCore for anything else."""
    db = getattr(engine, "_db", None)
    if db is not None:
        return NativeCore(engine, head, durable)
    return PythonCore(engine, head, durable)


class PythonCore:
    """The counters and lock in Python; reads through mvcc.latest()."""
    native = False

    def __init__(self, engine, head: int, durable: bool):
        self._eng = engine
        self._durable = durable
        self._head = self._visible = head
        self._lock = threading.Lock()
        self._bump = threading.Lock()

    def head(self) -> int:
        return self._head

    def visible(self) -> int:
        return self._visible

    def lock(self) -> None:
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    def note(self, key: bytes, rev: int) -> None:
        pass

    def lease_add(self, lease_id: int) -> None:
        pass

    def lease_remove(self, lease_id: int) -> None:
        pass

    def set_head(self, rev: int) -> None:
        self._head = rev
        if not self._durable:
            self.publish(rev)

    def publish(self, rev: int) -> None:
        with self._bump:
            if rev > self._visible:
                self._visible = rev

    def get(self, key: bytes, rev: int) -> Optional[Entry]:
        """Newest version of key <= rev, tombstones included. O(log n)."""
        return mvcc.latest(self._eng, key, rev)

    def get_kv(self, key: bytes, rev: int) -> Optional[KeyValue]:
        """The live version of key at rev as a KeyValue, or None. O(log n)."""
        e = mvcc.latest(self._eng, key, rev)
        return None if e is None or e.tombstone else e.to_kv()

    def get_kv_visible(self, key: bytes) -> Optional[KeyValue]:
        """get_kv at the visible revision. O(log n)."""
        return self.get_kv(key, self.visible())

    def close(self) -> None:
        pass


class _Scratch(threading.local):
    """Per-thread C buffers: a value buffer and the result structs."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, cap: int = _BUF) -> None:
        from ._native import ffi
        self.buf = ffi.new("uint8_t[]", cap)
        self.cap = cap
        self.cbuf = ffi.cast("char *", self.buf)
        self.kv = ffi.new("kvt_mvcc_kv *")
        self.resp = ffi.new("uint8_t **")
        self.resp_len = ffi.new("size_t *")


def _direct_calls(ffi, lib, m, durable: bool):
    """kvtrees._direct.Calls over handle m (kept alive by the caller)."""
    from ._direct import Calls

    def addr(name: str) -> int:
        return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
    fns = tuple(addr(n) for n in ("kvt_mvcc_put_begin", "kvt_mvcc_put_end", "kvt_mvcc_put",
                                  "kvt_mvcc_get", "kvt_mvcc_txn", "kvt_mvcc_release",
                                  "kvt_mvcc_visible"))
    return Calls(int(ffi.cast("uintptr_t", m)), fns, error_from_code, durable, KeyValue, Entry,
                 PREV_UNKNOWN, m)


class NativeCore:
    """kvt_mvcc over the engine's kvt_db (see kvt_mvcc.h)."""
    native = True

    def __init__(self, engine, head: int, durable: bool):
        from ._native import ffi, lib
        self._ffi, self._lib = ffi, lib
        out = ffi.new("kvt_mvcc **")
        rc = lib.kvt_mvcc_open(engine._db, head, 1 if durable else 0, out)
        if rc < 0:
            raise error_from_code(rc)
        self._m = ffi.gc(out[0], lib.kvt_mvcc_free)
        # the counters, read without a call (a call would release and retake the GIL);
        # valid while self._m lives, which this object holds
        self._head_word = lib.kvt_mvcc_head_word(self._m)
        self._visible_word = lib.kvt_mvcc_visible_word(self._m)
        self._tls = _Scratch()
        self._get = lib.kvt_mvcc_get
        calls = _direct_calls(ffi, lib, self._m, durable)
        # put(key, value, lease, want_prev) -> (revision, create_revision, version,
        # prev): prev the previous live Entry or None, or PREV_UNKNOWN when it exists
        # but was not asked for. Durable on return when the core is. O(log n), one C
        # call (kvtrees._direct) that gives up the GIL only to wait (for the fsync, or
        # for the writer lock when another thread holds it)
        self.put = calls.put
        # get_kv(key, rev): the live version of key at rev as a KeyValue, or None.
        # O(log n), one C call that builds the KeyValue (kvtrees._direct)
        self.get_kv = calls.get_kv
        self.get_kv_visible = calls.get_kv_visible     # get_kv at visible(), one C call
        # txn(request) -> response bytes: a txn of the native shape (txn_codec.encode),
        # durable on return when the core is; one C call, the GIL released
        self.txn = calls.txn
        self._unpack = ffi.unpack
        self._OK, self._NOTFOUND = lib.KVT_OK, lib.KVT_NOTFOUND
        self._EBUFSMALL, self._ETOOLARGE = lib.KVT_EBUFSMALL, lib.KVT_ETOOLARGE

    def head(self) -> int:
        return self._head_word[0]

    def visible(self) -> int:
        return self._visible_word[0]

    def lock(self) -> None:
        rc = self._lib.kvt_mvcc_lock(self._m)
        if rc < 0:
            raise error_from_code(rc)

    def unlock(self) -> None:
        self._lib.kvt_mvcc_unlock(self._m)

    def note(self, key: bytes, rev: int) -> None:
        """A write built in Python changed key at rev (before set_head)."""
        self._lib.kvt_mvcc_note(self._m, key, len(key), rev)

    def set_head(self, rev: int) -> None:
        self._lib.kvt_mvcc_set_head(self._m, rev)

    def lease_add(self, lease_id: int) -> None:
        """A lease is live (writer lock held): native puts may attach keys to it."""
        rc = self._lib.kvt_mvcc_lease_add(self._m, lease_id)
        if rc < 0:
            raise error_from_code(rc)

    def lease_remove(self, lease_id: int) -> None:
        """A lease is gone (writer lock held): native puts naming it fail."""
        self._lib.kvt_mvcc_lease_remove(self._m, lease_id)

    def publish(self, rev: int) -> None:
        self._lib.kvt_mvcc_publish(self._m, rev)

    def get(self, key: bytes, rev: int) -> Optional[Entry]:
        """Newest version of key <= rev, tombstones included. O(log n), one C call."""
        t = self._tls
        kv = t.kv
        rc = self._get(self._m, key, len(key), rev, t.buf, t.cap, kv)
        if rc == self._OK:
            return Entry(key, kv.mod, bool(kv.tombstone), kv.create, kv.version, kv.lease,
                         self._unpack(t.cbuf, kv.vlen))
        if rc == self._NOTFOUND:
            return None
        return self._get_slow(key, rev, rc)

    def _get_slow(self, key: bytes, rev: int, rc: int) -> Optional[Entry]:
        t = self._tls
        try:
            while rc == self._EBUFSMALL:
                t.reset(max(t.kv.vlen, 64))
                rc = self._get(self._m, key, len(key), rev, t.buf, t.cap, t.kv)
            if rc == self._OK:
                kv = t.kv
                return Entry(key, kv.mod, bool(kv.tombstone), kv.create, kv.version,
                             kv.lease, self._unpack(t.cbuf, kv.vlen))
            if rc in (self._NOTFOUND, self._ETOOLARGE):
                return None     # too long to have been stored: absent, as etcd
            raise error_from_code(rc)
        finally:
            if t.cap > _BUF_KEEP:
                t.reset()

    def range(self, lo: bytes, hi: bytes, rev: int, limit: int, keys_only: bool,
              count_only: bool) -> tuple:
        """(kvs, count) of the engine range [lo, hi) at rev in key order: every live key
        counted, the first `limit` (0: all) returned. One C call with the GIL released;
        O(versions in the range)."""
        t = self._tls
        flags = ((self._lib.KVT_MVCC_RANGE_KEYS_ONLY if keys_only else 0)
                 | (self._lib.KVT_MVCC_RANGE_COUNT_ONLY if count_only else 0))
        rc = self._lib.kvt_mvcc_range(self._m, lo, len(lo), hi, len(hi), rev, limit, flags,
                                      t.resp, t.resp_len)
        if rc < 0:
            raise error_from_code(rc)
        p = t.resp[0]
        try:
            resp = self._unpack(self._ffi.cast("char *", p), t.resp_len[0])
        finally:
            self._lib.kvt_mvcc_release(p)
        return txn_codec.decode_range(resp)

    def close(self) -> None:
        """Wait for calls in flight; later calls raise ClosedError. Idempotent."""
        self._lib.kvt_mvcc_close(self._m)
