"""Log entry data of the replicated store: a proposal id and one write request, as
compact bytes.

Entry layout: ``u8 version (1) | u64 proposer | u64 sequence | value``. The value is a
small self-describing encoding: one tag byte, then

* ``N`` None, ``T`` / ``F`` booleans, ``I`` a zigzag varint, ``B`` bytes and ``S``
  UTF-8 text (varint length first), ``L`` a list and ``D`` a text-keyed dict (varint
  count first),
* ``R`` a record: u8 record type (the request or txn-part class), varint field
  count, then the fields in declaration order.

Unknown versions, tags or record types raise CodecError; so does trailing data. The
decoded request equals the encoded one (round-trip tests: tests/test_cluster_codec.py).
"""

from __future__ import annotations

import struct
from typing import Any, Tuple

from ..errors import CorruptionError
from ..requests import (CompactRequest, DeleteRangeRequest, LeaseGrantRequest,
                        LeaseRevokeRequest, PutRequest, TxnRequest)
from ..txn import Compare, Delete, Get, Put, Txn
from .requests import LeaseRefreshRequest, MemberAttrRequest

VERSION = 1
_HEAD = struct.Struct(">BQQ")


class CodecError(CorruptionError):
    """Entry data that does not decode: a corrupt or foreign log entry."""


# record type codes: never reuse a number (entries live in logs and snapshots)
_RECORDS = {PutRequest: 1, DeleteRangeRequest: 2, TxnRequest: 3, LeaseGrantRequest: 4,
            LeaseRevokeRequest: 5, CompactRequest: 6, LeaseRefreshRequest: 7,
            MemberAttrRequest: 8, Compare: 20, Put: 21, Get: 22, Delete: 23, Txn: 24}
_BY_CODE = {v: k for k, v in _RECORDS.items()}
_FIELDS = {cls: (cls._fields if hasattr(cls, "_fields")
                 else tuple(cls.__dataclass_fields__)) for cls in _RECORDS}


def encode_entry(proposer: int, seq: int, req) -> bytes:
    """The entry data for request req proposed as (proposer, seq). O(size of req)."""
    out = bytearray(_HEAD.pack(VERSION, proposer, seq))
    if type(req) is PutRequest and type(req.key) is bytes and type(req.value) is bytes:
        _encode_put(req, out)     # the common entry: the same bytes, built directly
    else:
        _encode(req, out)
    return bytes(out)


def _encode_put(req: PutRequest, out: bytearray) -> None:
    k, v, lease, prev = req
    out += b"R\x01\x04B"
    _varint(len(k), out)
    out += k
    out += b"B"
    _varint(len(v), out)
    out += v
    out += b"I"
    _varint(lease << 1, out)
    out += b"T" if prev else b"F"


def decode_entry(data: bytes) -> Tuple[Tuple[int, int], Any]:
    """((proposer, seq), request) from entry data; CodecError if malformed."""
    if len(data) < _HEAD.size:
        raise CodecError("entry of %d bytes is too short" % len(data))
    version, proposer, seq = _HEAD.unpack_from(data)
    if version != VERSION:
        raise CodecError("entry format version %d is not supported" % version)
    try:
        if data[17:21] == b"R\x01\x04B":
            value, pos = _decode_put(data)
        else:
            value, pos = _decode(data, _HEAD.size)
    except (IndexError, struct.error, UnicodeDecodeError, TypeError) as e:
        raise CodecError("malformed entry: %s" % e) from None
    if pos != len(data):
        raise CodecError("entry has %d bytes of trailing data" % (len(data) - pos))
    return (proposer, seq), value


def _varint(n: int, out: bytearray) -> None:
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _read_varint(buf: bytes, pos: int) -> Tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
        if shift > 140:
            raise CodecError("varint too long")


def _encode(v: Any, out: bytearray) -> None:
    t = type(v)
    if v is None:
        out += b"N"
    elif t is bool:
        out += b"T" if v else b"F"
    elif t is int:
        out += b"I"
        _varint((v << 1) if v >= 0 else ((-v << 1) - 1), out)
    elif t is bytes or t is bytearray or t is memoryview:
        out += b"B"
        _varint(len(v), out)
        out += v
    elif t is str:
        raw = v.encode()
        out += b"S"
        _varint(len(raw), out)
        out += raw
    elif t is list or t is tuple:
        out += b"L"
        _varint(len(v), out)
        for x in v:
            _encode(x, out)
    elif t is dict:
        out += b"D"
        _varint(len(v), out)
        for k in sorted(v):
            _encode(str(k), out)
            _encode(v[k], out)
    elif t in _RECORDS:
        out += b"R"
        out.append(_RECORDS[t])
        names = _FIELDS[t]
        _varint(len(names), out)
        for name in names:
            _encode(getattr(v, name), out)
    else:
        raise TypeError("cannot encode %s in a log entry" % t.__name__)


def _decode(buf: bytes, pos: int) -> Tuple[Any, int]:
    tag = buf[pos:pos + 1]
    pos += 1
    if tag == b"N":
        return None, pos
    if tag == b"T":
        return True, pos
    if tag == b"F":
        return False, pos
    if tag == b"I":
        z, pos = _read_varint(buf, pos)
        return (z >> 1) if not z & 1 else -((z + 1) >> 1), pos
    if tag in (b"B", b"S"):
        n, pos = _read_varint(buf, pos)
        if pos + n > len(buf):
            raise CodecError("string runs past the end of the entry")
        raw = bytes(buf[pos:pos + n])
        return (raw if tag == b"B" else raw.decode()), pos + n
    if tag == b"L":
        n, pos = _read_varint(buf, pos)
        items = []
        for _ in range(n):
            x, pos = _decode(buf, pos)
            items.append(x)
        return items, pos
    if tag == b"D":
        n, pos = _read_varint(buf, pos)
        d = {}
        for _ in range(n):
            k, pos = _decode(buf, pos)
            d[k], pos = _decode(buf, pos)
        return d, pos
    if tag == b"R":
        return _decode_record(buf, pos)
    raise CodecError("unknown tag %r" % tag)


def _decode_put(buf: bytes) -> Tuple[PutRequest, int]:
    """A PutRequest record at the start of the value (the common entry)."""
    n, pos = _read_varint(buf, 21)
    end = pos + n
    key = buf[pos:end]
    if end > len(buf) or buf[end:end + 1] != b"B":
        raise CodecError("malformed put entry")
    n, pos = _read_varint(buf, end + 1)
    end = pos + n
    value = buf[pos:end]
    if end > len(buf) or buf[end:end + 1] != b"I":
        raise CodecError("malformed put entry")
    z, pos = _read_varint(buf, end + 1)
    if z & 1:
        raise CodecError("negative lease id in a put entry")
    flag = buf[pos:pos + 1]
    if flag not in (b"T", b"F"):
        raise CodecError("malformed put entry")
    return PutRequest(bytes(key), bytes(value), z >> 1, flag == b"T"), pos + 1


def _decode_record(buf: bytes, pos: int) -> Tuple[Any, int]:
    cls = _BY_CODE.get(buf[pos])
    if cls is None:
        raise CodecError("unknown record type %d" % buf[pos])
    n, pos = _read_varint(buf, pos + 1)
    if n != len(_FIELDS[cls]):
        raise CodecError("%s with %d fields, expected %d"
                         % (cls.__name__, n, len(_FIELDS[cls])))
    fields = []
    for _ in range(n):
        x, pos = _decode(buf, pos)
        fields.append(x)
    if cls is MemberAttrRequest:
        fields[2] = tuple(fields[2])
    return cls(*fields), pos
