"""The request and response bytes of kvt_mvcc_txn (native/include/kvt_mvcc.h): a txn
whose compares and ops each name one key runs in one native call. encode() returns None
for any other txn (ranges, nested txns, get options), which the store then runs in
Python."""

from __future__ import annotations

import struct
from typing import Optional

from ._txnpack import encode as _encode_c
from .mvcc import Entry, KeyValue, PutResult, DeleteResult
from .txn import Delete, Get, Put

__all__ = ["encode", "encode_py", "decode", "decode_range"]

_TARGET = {"version": 0, "create": 1, "mod": 2, "value": 3, "lease": 4}
_OP = {"==": 0, "!=": 1, "<": 2, ">": 3}
_PUT, _DELETE, _GET = 1, 2, 3
_I64 = 1 << 63
_u32 = struct.Struct("<I").pack
_hdr = struct.Struct("<BBI").pack
_q = struct.Struct("<q").pack
_lease = struct.Struct("<Q").pack
_KV = struct.Struct("<QQQQI")
_QQ = struct.Struct("<QQ")
_REV = struct.Struct("<BQ")
_RANGE = struct.Struct("<QI")
_new = tuple.__new__


def encode(compare: list, success: list, failure: list, want_prev: bool) -> Optional[bytes]:
    """Request bytes, or None when the txn is not of the native shape. want_prev: return
    every previous version (for watchers that want prev_kv), not only those asked for.
    compare, success and failure are lists. O(request size), in C (kvtrees._txnpack:
    1.86 us per compare-and-swap txn in Python); encode_py is the same rules in Python,
    the reference its tests compare against."""
    return _encode_c(compare, success, failure, want_prev, Put, Delete, Get)


def encode_py(compare: list, success: list, failure: list,
              want_prev: bool) -> Optional[bytes]:
    """encode() in Python (the reference for kvtrees._txnpack)."""
    parts = [_u32(len(compare))]
    add = parts.append
    for c in compare:
        if c.range_end is not None:
            return None
        t = _TARGET[c.target]
        add(_hdr(t, _OP[c.op], len(c.key)))
        add(c.key)
        if t == 3:
            add(_u32(len(c.operand)))
            add(c.operand)
        elif -_I64 <= c.operand < _I64:
            add(_q(c.operand))
        else:
            return None
    for branch in (success, failure):
        add(_u32(len(branch)))
        for op in branch:
            cls = type(op)
            if cls is Put:
                if op.ignore_value or op.ignore_lease:
                    return None
                add(_hdr(_PUT, 1 if (op.prev_kv or want_prev) else 0, len(op.key)))
                add(op.key)
                add(_u32(len(op.value)))
                add(op.value)
                add(_lease(op.lease))
            elif cls is Delete and op.range_end is None:
                add(_hdr(_DELETE, 1 if (op.prev_kv or want_prev) else 0, len(op.key)))
                add(op.key)
            elif cls is Get and op.range_end is None and not op.kwargs:
                add(_hdr(_GET, 0, len(op.key)))
                add(op.key)
            else:
                return None
    return b"".join(parts)


def _kv(resp: bytes, off: int) -> tuple:
    create, mod, version, lease, kl = _KV.unpack_from(resp, off)
    off += 36
    key = resp[off:off + kl]
    off += kl
    vl = int.from_bytes(resp[off:off + 4], "little")
    off += 4
    return _new(KeyValue, (key, resp[off:off + vl], create, mod, version, lease)), off + vl


def _entry(kv: KeyValue) -> Entry:
    return Entry(kv.key, kv.mod_revision, False, kv.create_revision, kv.version, kv.lease,
                 kv.value)


def decode(resp: bytes, success: list, failure: list, prev_unknown,
           want_changes: bool = True) -> tuple:
    """(succeeded, responses, revision, changes): responses as Store.transaction returns
    them; changes the (new Entry, previous Entry | None | prev_unknown) pairs of the
    writes, for the watchers (empty unless want_changes). O(response size)."""
    ok, rev = _REV.unpack_from(resp, 0)
    off = 9
    responses, changes = [], []
    for op in (success if ok else failure):
        kind = resp[off]
        off += 1
        if kind == _GET:
            found = resp[off]
            off += 1
            if found:
                kv, off = _kv(resp, off)
                responses.append([(kv.value, kv)])
            else:
                responses.append([])
            continue
        if kind == _PUT:
            create, version = _QQ.unpack_from(resp, off)
            off += 16
            existed = version > 1
        else:
            existed = resp[off] == 1
            off += 1
        prev = None
        if resp[off]:
            prev, off = _kv(resp, off + 1)
        else:
            off += 1
        if kind == _PUT:
            responses.append(_new(PutResult, (rev, prev if op.prev_kv else None)))
        else:
            responses.append(_new(DeleteResult, (1 if existed else 0,
                                                 [prev] if op.prev_kv and prev else [], rev)))
        if want_changes and (kind == _PUT or existed):
            new = (Entry(op.key, rev, False, create, version, op.lease, op.value)
                   if kind == _PUT else Entry(op.key, rev, True, 0, 0, 0, b""))
            changes.append((new, _entry(prev) if prev else (prev_unknown if existed else None)))
    return bool(ok), responses, rev, changes


def decode_range(resp: bytes) -> tuple:
    """(kvs, count) from kvt_mvcc_range's response (the same kv encoding as a txn's).
    O(response size)."""
    count, n = _RANGE.unpack_from(resp, 0)
    off, kvs = 12, []
    add = kvs.append
    for _ in range(n):
        kv, off = _kv(resp, off)
        add(kv)
    return kvs, count
