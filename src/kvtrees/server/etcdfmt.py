"""The store's history in etcd's own storage layout, rebuilt from the public API.

etcd keeps every version in bbolt's "key" bucket under an 17-byte revision key (8-byte
big-endian main revision, '_', 8-byte sub revision; a tombstone adds 't'), the value
being the marshalled mvccpb.KeyValue (a tombstone's holds only the key). HashKV is a
CRC-32C over that bucket, and a snapshot is that bbolt file. Rebuilding the same
entries lets `etcdctl endpoint hashkv` agree with etcd for equal histories and lets
snapshots be read by `etcdctl snapshot status|restore`.

Entries come from two reads: the live keys at the compacted revision (what etcd's
compaction keeps) and a watch replay of every later revision. The sub revision of an
event is its position within its revision (as etcd numbers a txn's writes); for the
kept keys below the compacted revision it is not recorded by the store, so keys that
share a main revision there get subs in key order (etcd: in write order). O(versions).
"""
from __future__ import annotations

import struct
from typing import Iterator, Optional

from .. import errors as kerr
from ..watch import DeleteEvent
from .proto import kv_pb2

KEY_BUCKET = b"key"


def rev_key(main: int, sub: int, tombstone: bool = False) -> bytes:
    return struct.pack(">Q", main) + b"_" + struct.pack(">Q", sub) + (b"t" if tombstone else b"")


def _kv_bytes(kv) -> bytes:
    return kv_pb2.KeyValue(key=kv.key, value=kv.value, create_revision=kv.create_revision,
                           mod_revision=kv.mod_revision, version=kv.version,
                           lease=kv.lease).SerializeToString(deterministic=True)


def key_bucket(store, revision: Optional[int] = None, retries: int = 3) -> tuple:
    """([(revision key, value)] in key order up to revision, revision, compact revision).
    Retries if a compaction runs meanwhile; CompactedError if revision is compacted."""
    for attempt in range(retries):
        compact = store.compact_revision
        rev = revision or store.revision
        if rev < compact:
            raise kerr.CompactedError("required revision has been compacted", compact)
        try:
            return _entries(store, rev, compact), rev, compact
        except kerr.CompactedError:
            if attempt == retries - 1:
                raise
    raise AssertionError("unreachable")


def _entries(store, rev: int, compact: int) -> list:
    out = []
    if compact > 0:
        kept = store.range(b"\x00", b"\x00", revision=compact).kvs
        subs: dict = {}
        for kv in sorted(kept, key=lambda k: (k.mod_revision, k.key)):
            sub = subs.get(kv.mod_revision, 0)
            subs[kv.mod_revision] = sub + 1
            out.append((rev_key(kv.mod_revision, sub), _kv_bytes(kv)))
    out.extend(_replayed(store, compact + 1 if compact else 1, rev))
    out.sort(key=lambda e: e[0])
    return out


def _replayed(store, first: int, last: int) -> Iterator[tuple]:
    if first > last:
        return
    events, cancel = store.watch(b"\x00", range_end=b"\x00", start_revision=first)
    try:
        cur, sub = 0, 0
        while True:
            try:
                ev = events.get(0)
            except TimeoutError:
                return                     # replayed through the watch's start revision
            if ev is None or ev.mod_revision > last:
                return
            if ev.mod_revision != cur:
                cur, sub = ev.mod_revision, 0
            if isinstance(ev, DeleteEvent):
                yield rev_key(cur, sub, True), kv_pb2.KeyValue(key=ev.key).SerializeToString()
            else:
                yield rev_key(cur, sub), _kv_bytes(ev.kv)
            sub += 1
    finally:
        cancel()


def crc32c(crc: int, data: bytes) -> int:
    """CRC-32C (Castagnoli), chainable as Go's crc32.Update: the native kvtrees routine."""
    from .._native import ffi, lib
    return lib.kvt_crc32c(crc, ffi.from_buffer(data), len(data))


def hash_kv(store, revision: int = 0) -> tuple:
    """etcd's HashKV over the rebuilt key bucket: (hash, compact revision, revision)."""
    entries, rev, compact = key_bucket(store, revision or None)
    h = crc32c(0, KEY_BUCKET)
    for k, v in entries:
        h = crc32c(crc32c(h, k), v)
    return h, compact, rev
