"""Store snapshots for Raft: the whole engine keyspace as one byte string (what a
lagging or new member installs), and installing one in place.

Format: ``b"KVTSNAP1" | u64 applied index | records | u32 crc32 of everything before``,
a record being ``u32 key length | u32 value length | key | value`` in key order. The
snapshot travels as one Raft message and one raft.snap file (a stated limit: it is held
in memory whole; see docs/RAFT.md)."""

from __future__ import annotations

import struct
import zlib
from typing import Iterator, Tuple

from .. import mvcc
from ..errors import CorruptionError

MAGIC = b"KVTSNAP1"
_REC = struct.Struct(">II")
_U64 = struct.Struct(">Q")
INSTALLING = mvcc.META + b"snapshot_installing"   # set while an install is under way
_BATCH = 5000


def dump(store) -> bytes:
    """The store's engine contents at its applied index, made durable first (so the
    Raft log may then be compacted up to that index). Holds the writer lock while
    copying. O(store size) time and memory."""
    with store._writing():
        store._eng.sync()
        parts = [MAGIC, _U64.pack(store.applied_index)]
        for k, v in store._eng.items():
            parts.append(_REC.pack(len(k), len(v)))
            parts.append(bytes(k))
            parts.append(bytes(v))
        body = b"".join(parts)
    return body + struct.pack(">I", zlib.crc32(body))


def parse(data: bytes) -> Tuple[int, Iterator[Tuple[bytes, bytes]]]:
    """(applied index, iterator of (key, value)); CorruptionError if damaged."""
    if len(data) < len(MAGIC) + 12 or data[:len(MAGIC)] != MAGIC:
        raise CorruptionError("not a kvtrees store snapshot")
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    if zlib.crc32(body) != crc:
        raise CorruptionError("store snapshot checksum mismatch")
    (index,) = _U64.unpack_from(body, len(MAGIC))
    return index, _records(body, len(MAGIC) + 8)


def _records(body: bytes, pos: int) -> Iterator[Tuple[bytes, bytes]]:
    mv = memoryview(body)
    while pos < len(body):
        kl, vl = _REC.unpack_from(body, pos)
        pos += _REC.size
        if pos + kl + vl > len(body):
            raise CorruptionError("store snapshot record runs past the end")
        yield bytes(mv[pos:pos + kl]), bytes(mv[pos + kl:pos + kl + vl])
        pos += kl + vl


def install(store, data: bytes, index: int) -> None:
    """Replace the store's contents by a snapshot taken at Raft index ``index``.
    Crash-safe by a marker: it is set before the old data goes and removed in the batch
    that stamps the new applied index, so a store found with the marker has no usable
    state and installs the snapshot again at start (ClusterMember). Caller: the applying
    thread (no other writer runs on a replicated store). O(old size + new size)."""
    snap_index, records = parse(data)
    if snap_index != index:
        raise CorruptionError("store snapshot is at index %d, Raft says %d"
                              % (snap_index, index))
    eng = store._eng
    with eng.batch() as b:
        b.put(INSTALLING, b"1")
    _delete_all(eng)
    batch = []
    for k, v in records:
        if k == INSTALLING:
            continue
        batch.append((k, v))
        if len(batch) >= _BATCH:
            _write(eng, batch, ())
            batch = []
    _write(eng, batch, [(mvcc.META_APPLIED, mvcc.be64(index)), (INSTALLING, None)])
    eng.sync()


def _delete_all(eng) -> None:
    while True:
        keys = []
        for k in eng.keys():
            if k != INSTALLING:
                keys.append(bytes(k))
            if len(keys) >= _BATCH:
                break
        if not keys:
            return
        with eng.batch() as b:
            for k in keys:
                b.delete(k)


def _write(eng, batch, tail) -> None:
    with eng.batch() as b:
        for k, v in batch:
            b.put(k, v)
        for k, v in tail:
            b.delete(k) if v is None else b.put(k, v)
