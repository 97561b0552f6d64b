"""The lock/election recipe of etcd's clientv3/concurrency, with the caller's lease.

A participant owns `<name>/<lease id in hex>` (created with its lease, so it vanishes
when the lease does). Participants queue by create revision; each waits, through a
watch, for the deletion of the newest key created before its own, then looks again.
Waiting stops when the RPC ends (client gone, deadline): the caller then deletes its key
so it does not hold a place in the queue, as etcd does.
"""
from __future__ import annotations

from typing import Optional

from ..mvcc import prefix_end
from ..watch import DeleteEvent, PutEvent
from . import rpcerrors

POLL = 0.5          # seconds between checks that the RPC is still wanted
SESSION_EXPIRED = rpcerrors.RpcError(rpcerrors.C.UNKNOWN, "session expired")


def own_key(store, name: bytes, lease: int, value: bytes) -> tuple:
    """Create (or find, if this lease already has it) the participant key:
    (key, create_revision, current value)."""
    if not lease or not store.lease_granted_ttl(lease):
        raise rpcerrors.LEASE_NOT_FOUND
    key = name + b"/" + b"%x" % lease
    t = store.transactions
    store.transaction([t.create(key) == 0], [t.put(key, value, lease=lease)], [])
    cur_value, kv = store.get(key)
    if kv is None:
        raise SESSION_EXPIRED            # the lease expired in between
    return key, kv.create_revision, cur_value


def wait_turn(store, name: bytes, my_rev: int, context) -> None:
    """Block until no key under name/ was created before my_rev. O(waiters ahead)."""
    prefix = name + b"/"
    end = prefix_end(prefix)
    while True:
        res = store.range(prefix, end, max_create_revision=my_rev - 1,
                          sort_order="descend", sort_target="create", limit=1)
        if not res.kvs:
            return
        _wait_deleted(store, res.kvs[0].key, res.revision + 1, context)


def _wait_deleted(store, key: bytes, from_rev: int, context) -> None:
    events, cancel = store.watch(key, start_revision=from_rev)
    try:
        while True:
            _check_active(context)
            try:
                ev = events.get(POLL)
            except TimeoutError:
                continue
            if ev is None:
                raise rpcerrors.STOPPED
            if isinstance(ev, DeleteEvent):
                return
    finally:
        cancel()


def _check_active(context) -> None:
    if not context.is_active():
        raise rpcerrors.RpcError(rpcerrors.C.CANCELLED, "context canceled")


def still_owner(store, key: bytes, rev: int) -> bool:
    _, kv = store.get(key)
    return kv is not None and kv.create_revision == rev


def first_in_line(store, name: bytes):
    """The KeyValue created first under name/ (the leader), or None; with the read's
    header revision."""
    prefix = name + b"/"
    res = store.range(prefix, prefix_end(prefix), sort_order="ascend",
                      sort_target="create", limit=1)
    return (res.kvs[0] if res.kvs else None), res.revision


def next_change(store, key: bytes, end: Optional[bytes], from_rev: int, context,
                want_delete: bool):
    """The first event on [key, end) from from_rev: a PutEvent (or, with want_delete,
    a DeleteEvent)."""
    events, cancel = store.watch(key, start_revision=from_rev, range_end=end)
    try:
        while True:
            _check_active(context)
            try:
                ev = events.get(POLL)
            except TimeoutError:
                continue
            if ev is None:
                raise rpcerrors.STOPPED
            if isinstance(ev, PutEvent) or want_delete:
                return ev
    finally:
        cancel()
