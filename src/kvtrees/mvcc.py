"""MVCC key layout and read path over a raw ordered engine (see docs/STORE.md).

The whole index lives in the engine, so opening a store costs the same with ten keys or
ten million, and memory stays bounded by the engine's cache:

    k + esc(key) + 00 01 + ~rev (8 bytes BE)  -> flags, create, version, lease, value
    r + rev (8 bytes BE) + sub (4 bytes BE)   -> key             (revision log)
    m + name                                  -> metadata        (revision, compaction)
    l + lease id (8 bytes BE)                 -> granted ttl
    a + lease id (8 bytes BE) + key           -> b""             (keys attached to a lease)

esc() doubles every 00 byte as 00 FF and 00 01 ends the key: the encoding keeps the
order of user keys and no encoded key is a prefix of another, so all versions of a key
are contiguous and sorted newest first (inverted revision): "latest version at or below
rev" is one seek.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional

KV = b"k"
KV_END = b"l"          # first byte after the k keyspace
REVLOG = b"r"
META = b"m"
LEASE = b"l"
ATTACH = b"a"

META_REVISION = META + b"revision"
META_COMPACT = META + b"compact"            # scheduled compaction revision (reads below fail)
META_COMPACT_DONE = META + b"compact_done"  # physically finished up to here
META_APPLIED = META + b"applied"            # the Raft index applied last (replicated stores)

KEY_TERM = b"\x00\x01"
from .limits import MAX_KEY as MAX_ENGINE_KEY  # noqa: E402  (kvt_limits.h)
_MAXREV = (1 << 64) - 1
_HDR = struct.Struct(">BQQQ")               # flags, create_revision, version, lease
FLAG_TOMBSTONE = 1
_new_kv = tuple.__new__       # KeyValue from a tuple without the generated __new__


class KeyValue(NamedTuple):
    """One version of a key, as etcd's mvccpb.KeyValue. (Immutable; a named tuple because
    reads build one per key returned: half the cost of a frozen dataclass.)"""
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @property
    def lease_id(self) -> int:          # python-etcd3's name
        return self.lease


class RangeResult(NamedTuple):
    kvs: list
    count: int
    more: bool
    revision: int


class PutResult(NamedTuple):
    revision: int
    prev_kv: Optional[KeyValue]


class DeleteResult(NamedTuple):
    deleted: int
    prev_kvs: list
    revision: int


# ---------------------------------------------------------------- key encoding

def esc(key: bytes) -> bytes:
    return key.replace(b"\x00", b"\x00\xff") + KEY_TERM


def unesc(enc: bytes) -> bytes:
    """Inverse of esc() for an encoded key without its terminator."""
    return enc.replace(b"\x00\xff", b"\x00")


def be64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def inv_rev(rev: int) -> bytes:
    return (_MAXREV - rev).to_bytes(8, "big")


def kv_prefix(key: bytes) -> bytes:
    """Engine-key prefix shared by every version of user key `key`."""
    return KV + esc(key)


def kv_key(key: bytes, rev: int) -> bytes:
    return KV + esc(key) + inv_rev(rev)


def split_kv_key(ek: bytes) -> tuple[bytes, int]:
    """Engine k-key -> (user key, revision)."""
    return unesc(ek[1:-10]), _MAXREV - int.from_bytes(ek[-8:], "big")


def revlog_key(rev: int, sub: int) -> bytes:
    return REVLOG + be64(rev) + sub.to_bytes(4, "big")


def range_bounds(start: bytes, end: Optional[bytes]) -> tuple[bytes, bytes]:
    """User range [start, end) (end None: to the last key) -> engine k-range."""
    return kv_prefix(start), (kv_prefix(end) if end is not None else KV_END)


def prefix_end(prefix: bytes) -> Optional[bytes]:
    """Smallest key greater than every key starting with prefix (None: no bound)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None


# ---------------------------------------------------------------- entries

def encode_entry(value: bytes, create: int, version: int, lease: int,
                 tombstone: bool = False) -> bytes:
    return _HDR.pack(FLAG_TOMBSTONE if tombstone else 0, create, version, lease) + value


class Entry(NamedTuple):
    """A decoded k entry (one version or one tombstone)."""
    key: bytes
    mod: int
    tombstone: bool
    create: int
    version: int
    lease: int
    value: bytes

    # KeyValue's names, so a compare can read an Entry without building a KeyValue
    create_revision = property(lambda self: self.create)
    mod_revision = property(lambda self: self.mod)

    def to_kv(self, keys_only: bool = False) -> KeyValue:
        return _new_kv(KeyValue, (self[0], b"" if keys_only else self[6], self[3], self[1],
                                  self[4], self[5]))


def decode_entry(ek: bytes, ev: bytes) -> Entry:
    if len(ev) < _HDR.size or ek[:1] != KV or ek[-10:-8] != KEY_TERM:
        raise ValueError("malformed MVCC entry %r" % (ek[:64],))
    flags, create, version, lease = _HDR.unpack_from(ev)
    key, mod = split_kv_key(ek)
    return Entry(key, mod, bool(flags & FLAG_TOMBSTONE), create, version, lease,
                 bytes(ev[_HDR.size:]))


def decode_value(key: bytes, mod: int, ev: bytes) -> Entry:
    """The entry stored under kv_key(key, mod) (key and revision already known)."""
    if len(ev) < _HDR.size:
        raise ValueError("malformed MVCC entry for key %r at revision %d" % (key[:64], mod))
    flags, create, version, lease = _HDR.unpack_from(ev)
    return Entry(key, mod, bool(flags & FLAG_TOMBSTONE), create, version, lease,
                 bytes(ev[_HDR.size:]))


# ---------------------------------------------------------------- reads

def latest(eng, key: bytes, rev: int) -> Optional[Entry]:
    """Newest version of key with mod_revision <= rev (tombstones included), or None."""
    pfx = kv_prefix(key)
    if len(pfx) + 8 > MAX_ENGINE_KEY:
        return None        # too long to have been stored (puts refuse it): absent, as etcd
    for ek, ev in eng.items(pfx + inv_rev(rev), pfx[:-1] + b"\x02"):
        return decode_entry(ek, ev)
    return None


def live(eng, key: bytes, rev: int) -> Optional[Entry]:
    e = latest(eng, key, rev)
    return None if e is None or e.tombstone else e


def older_versions(eng, key: bytes, rev: int) -> Iterator[bytes]:
    """Engine keys of every version of key strictly older than rev."""
    pfx = kv_prefix(key)
    for ek, _ in eng.items(pfx + inv_rev(rev - 1), pfx[:-1] + b"\x02"):
        yield ek


def _live(eng, start: bytes, end: Optional[bytes], rev: int, reverse: bool):
    """(engine key, engine value, create, version, lease) of each live entry at rev."""
    hdr, unpack = _HDR.size, _HDR.unpack_from
    for ek, ev in _pick(eng, start, end, rev, reverse):
        if len(ev) < hdr:
            raise ValueError("malformed MVCC entry %r" % (ek[:64],))
        flags, create, version, lease = unpack(ev)
        if not flags & FLAG_TOMBSTONE:
            yield ek, ev, create, version, lease


def _mod_rev(ek: bytes) -> int:
    return _MAXREV - int.from_bytes(ek[-8:], "big")


def scan(eng, start: bytes, end: Optional[bytes], rev: int,
         reverse: bool = False) -> Iterator[Entry]:
    """Live entries at revision rev for user keys in [start, end), in key order."""
    hdr = _HDR.size
    for ek, ev, create, version, lease in _live(eng, start, end, rev, reverse):
        yield Entry(unesc(ek[1:-10]), _mod_rev(ek), False, create, version, lease,
                    bytes(ev[hdr:]))


def scan_kvs(eng, start: bytes, end: Optional[bytes], rev: int, reverse: bool = False,
             keys_only: bool = False) -> Iterator[KeyValue]:
    """scan() for range reads: KeyValues directly (no Entry in between)."""
    hdr = _HDR.size
    for ek, ev, create, version, lease in _live(eng, start, end, rev, reverse):
        yield KeyValue(unesc(ek[1:-10]), b"" if keys_only else bytes(ev[hdr:]), create,
                       _mod_rev(ek), version, lease)


def _pick(eng, start: bytes, end: Optional[bytes], rev: int,
          reverse: bool) -> Iterator[tuple]:
    """(engine key, value) of each user key's version at rev (tombstones included)."""
    lo, hi = range_bounds(start, end)
    if len(lo) <= MAX_ENGINE_KEY and len(hi) <= MAX_ENGINE_KEY:
        return _pick_in(eng, lo, hi, rev, reverse)
    return _pick_clamped(eng, lo, hi, rev, reverse)


def _pick_clamped(eng, lo: bytes, hi: bytes, rev: int, reverse: bool) -> Iterator[tuple]:
    """_pick() for a range bound longer than the engine accepts (etcd takes any range):
    scan the widest engine range that still fits (a cut lo is <= lo; the keys between a
    cut hi and hi all start with the cut, so the cut's prefix_end covers them) and keep
    the keys whose encoded form lies in [lo, hi): the encoding keeps user-key order."""
    elo = lo[:MAX_ENGINE_KEY]
    ehi = hi if len(hi) <= MAX_ENGINE_KEY else (prefix_end(hi[:MAX_ENGINE_KEY]) or KV_END)
    for ek, ev in _pick_in(eng, elo, ehi, rev, reverse):
        if lo <= ek[:-8] < hi:
            yield ek, ev


def _pick_in(eng, lo: bytes, hi: bytes, rev: int, reverse: bool) -> Iterator[tuple]:
    """_pick() over the engine range [lo, hi).

    Hot loop of every range: the versions of one key share the engine-key prefix
    ek[:-8], and "mod <= rev" is "inverted revision >= inv_rev(rev)" on the raw 8 bytes,
    so a skipped version costs a slice and a compare; nothing is decoded here."""
    irev = inv_rev(rev)
    cur, best_k, best_v = None, None, None
    for ek, ev in eng.items(lo, hi, reverse=reverse):
        grp = ek[:-8]
        if grp != cur:
            if best_k is not None:
                yield best_k, best_v
            if grp[-2:] != KEY_TERM:
                raise ValueError("malformed MVCC key %r" % (ek[:64],))
            cur, best_k = grp, None
        if ek[-8:] < irev:
            continue                          # newer than rev
        # forward: first version <= rev wins; reverse (oldest first): last one wins
        if best_k is None or reverse:
            best_k, best_v = ek, ev
    if best_k is not None:
        yield best_k, best_v
