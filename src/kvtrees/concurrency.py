"""Lock and election, as etcd's clientv3/concurrency recipes do them.

Each participant grants a lease and creates `name/<lease id in hex>` with it (so a
holder that dies or stops refreshing releases when the lease expires). Participants are
ordered by create revision; each waits, via a watch, for the deletion of the newest key
created before its own, then re-checks (the predecessor may have left while others
remain). Thread-safe: a Lock or Election object guards its own state.

Etcd3Lock is python-etcd3's lock beside ours, for code ported from it: one key
`/locks/<name>` holding a random id, taken with a create-revision-0 txn, and
acquire(timeout=10) by default. The two kinds use different keys and do not exclude
each other; pick one per lock name.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Iterator, Optional

from .errors import ClosedError, LeaseNotFoundError
from .mvcc import KeyValue, prefix_end
from .txn import to_key, to_value
from .watch import DeleteEvent


def _name(name) -> bytes:
    return to_key(name)


def _wait_deleted(store, key: bytes, from_rev: int, deadline: Optional[float]) -> bool:
    """Block until key is deleted at a revision >= from_rev (True) or the deadline
    passes (False). Watching from a past revision sees a deletion that already happened,
    so no wake-up is lost between a read and the watch."""
    events, cancel = store.watch(key, start_revision=from_rev)
    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                ev = events.get(left)
            except TimeoutError:
                return False
            if ev is None:
                raise ClosedError("store closed while waiting")
            if isinstance(ev, DeleteEvent):
                return True
    finally:
        cancel()


class _Session:
    """A lease-backed key under prefix; shared core of Lock and Election."""

    def __init__(self, store, name, ttl: int):
        self.store = store
        self.prefix = _name(name) + b"/"
        self.ttl = ttl
        self.lease = None
        self.key: Optional[bytes] = None
        self.rev = 0                     # create revision of our key
        self._mutex = threading.RLock()

    def create(self, value: bytes) -> None:
        self.lease = self.store.lease(self.ttl)
        self.key = self.prefix + b"%x" % self.lease.id
        t = self.store.transactions
        self.store.transaction([t.create(self.key) == 0],
                               [t.put(self.key, value, lease=self.lease)], [])
        _, kv = self.store.get(self.key)
        if kv is None:
            raise LeaseNotFoundError("lease expired while creating %r" % self.key)
        self.rev = kv.create_revision

    def wait_predecessors(self, deadline: Optional[float]) -> bool:
        """Block until no key under prefix was created before ours; False on timeout."""
        end = prefix_end(self.prefix)
        while True:
            res = self.store.range(self.prefix, end, max_create_revision=self.rev - 1,
                                   sort_order="descend", sort_target="create", limit=1)
            if not res.kvs:
                return self.held()
            if not self._wait_deleted(res.kvs[0].key, res.revision + 1, deadline):
                return False

    def _wait_deleted(self, key: bytes, from_rev: int, deadline: Optional[float]) -> bool:
        return _wait_deleted(self.store, key, from_rev, deadline)

    def held(self) -> bool:
        if self.key is None:
            return False
        _, kv = self.store.get(self.key)
        return kv is not None and kv.create_revision == self.rev

    def drop(self) -> None:
        lease, self.lease, self.key, self.rev = self.lease, None, None, 0
        if lease is not None:
            try:
                lease.revoke()           # deletes our key in the same revision
            except LeaseNotFoundError:
                pass                      # already expired


class Lock:
    """db.lock(name, ttl): acquire(timeout) / release() / is_acquired() / refresh()."""

    def __init__(self, store, name, ttl: int = 60):
        self.name = _name(name)
        self._s = _Session(store, name, ttl)

    @property
    def key(self) -> Optional[bytes]:
        return self._s.key

    def acquire(self, timeout: Optional[float] = None) -> bool:
        """Block until held (True) or timeout seconds passed (False, nothing left)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._s._mutex:
            if self._s.key is not None and self._s.held():
                return True
            self._s.drop()
            self._s.create(b"")
            try:
                ok = self._s.wait_predecessors(deadline)
            except BaseException:
                self._s.drop()
                raise
            if not ok:
                self._s.drop()
            return ok

    def release(self) -> bool:
        with self._s._mutex:
            had = self._s.key is not None
            self._s.drop()
            return had

    def refresh(self) -> int:
        with self._s._mutex:
            if self._s.lease is None:
                raise ValueError("lock %r is not held" % self.name)
            return self._s.lease.refresh()

    def is_acquired(self) -> bool:
        with self._s._mutex:
            return self._s.held() and not self._s.store.range(
                self._s.prefix, prefix_end(self._s.prefix),
                max_create_revision=self._s.rev - 1, count_only=False, limit=1).kvs

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class Etcd3Lock:
    """python-etcd3's Lock on a kvtrees store: etcd3_lock(db, name, ttl=60).

    The key is `/locks/<name>` (lock_prefix + name) and holds this object's random id
    (uuid1 bytes) under a lease of ttl seconds; acquire() defaults to a 10 s timeout as
    python-etcd3's does (None: wait forever), and `with lock:` acquires with that
    default and, as there, enters even if the 10 s passed (check is_acquired()). A
    failed try revokes its lease (python-etcd3 leaves it to expire). Waiting is a watch
    on the key: O(1) store calls per wake-up, no polling.
    """

    lock_prefix = "/locks/"

    def __init__(self, store, name, ttl: int = 60):
        self.name = name
        self.ttl = ttl
        self.store = store
        self.key = to_key(self.lock_prefix.encode() + _name(name))
        self.lease = None
        self.uuid = uuid.uuid1().bytes
        self._mutex = threading.RLock()

    def acquire(self, timeout: Optional[float] = 10) -> bool:
        """True once held; False when timeout seconds passed first (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mutex:
            while True:
                holder_rev = self._try_acquire()
                if holder_rev is None:
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                _wait_deleted(self.store, self.key, holder_rev + 1, deadline)

    def _try_acquire(self) -> Optional[int]:
        """None if we now hold the key, else the holder's mod revision (0: it just left)."""
        lease = self.store.lease(self.ttl)
        t = self.store.transactions
        ok, _ = self.store.transaction([t.create(self.key) == 0],
                                       [t.put(self.key, self.uuid, lease=lease)], [])
        if ok:
            self.lease = lease
            return None
        try:
            lease.revoke()
        except LeaseNotFoundError:
            pass
        _, kv = self.store.get(self.key)
        return kv.mod_revision if kv is not None else self.store.revision

    def release(self) -> bool:
        """Delete the key if it still holds our id; True if it did."""
        with self._mutex:
            t = self.store.transactions
            ok, _ = self.store.transaction([t.value(self.key) == self.uuid],
                                           [t.delete(self.key)], [])
            lease, self.lease = self.lease, None
            if lease is not None:
                try:
                    lease.revoke()
                except LeaseNotFoundError:
                    pass
            return ok

    def refresh(self) -> int:
        """Refresh the lease; ValueError when the lock was never acquired."""
        if self.lease is None:
            raise ValueError("no lease associated with this lock - have you acquired it?")
        return self.lease.refresh()

    def is_acquired(self) -> bool:
        value, _ = self.store.get(self.key)
        return value is not None and value == self.uuid

    def __enter__(self) -> "Etcd3Lock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def etcd3_lock(store, name, ttl: int = 60) -> Etcd3Lock:
    """python-etcd3's `client.lock(name, ttl)` on a kvtrees store (see Etcd3Lock)."""
    return Etcd3Lock(store, name, ttl)


class Election:
    """db.election(name): campaign / proclaim / resign / leader / observe."""

    def __init__(self, store, name, ttl: int = 60):
        self.name = _name(name)
        self._store = store
        self._s = _Session(store, name, ttl)

    @property
    def key(self) -> Optional[bytes]:
        return self._s.key

    def campaign(self, value, timeout: Optional[float] = None) -> bool:
        """Become leader with value; True once elected, False on timeout."""
        v = to_value(value)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._s._mutex:
            if self._s.key is None:
                self._s.create(v)
            else:
                self.proclaim(v)
            ok = self._s.wait_predecessors(deadline)
            if not ok:
                self._s.drop()
            return ok

    def proclaim(self, value) -> bool:
        """Change the leader's value; False if we are not (or no longer) the candidate."""
        v = to_value(value)
        with self._s._mutex:
            if self._s.key is None:
                return False
            t = self._store.transactions
            ok, _ = self._store.transaction(
                [t.create(self._s.key) == self._s.rev],
                [t.put(self._s.key, v, lease=self._s.lease)], [])
            return ok

    def resign(self) -> None:
        with self._s._mutex:
            self._s.drop()

    def leader(self) -> Optional[KeyValue]:
        res = self._store.range(self._s.prefix, prefix_end(self._s.prefix),
                                sort_order="ascend", sort_target="create", limit=1)
        return res.kvs[0] if res.kvs else None

    def observe(self, timeout: Optional[float] = None) -> Iterator[KeyValue]:
        """Yield the leader each time it changes (key or value); stops after timeout
        seconds without a change (None: never)."""
        last = None
        end = prefix_end(self._s.prefix)
        while True:
            res = self._store.range(self._s.prefix, end, sort_order="ascend",
                                    sort_target="create", limit=1)
            cur = res.kvs[0] if res.kvs else None
            if cur is not None and (last is None or (cur.key, cur.mod_revision)
                                    != (last.key, last.mod_revision)):
                last = cur
                yield cur
            events, cancel = self._store.watch(self._s.prefix, range_end=end,
                                               start_revision=res.revision + 1)
            try:
                if events.get(timeout) is None:
                    return
            except TimeoutError:
                return
            finally:
                cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.resign()
