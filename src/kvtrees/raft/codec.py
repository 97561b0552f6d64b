"""Wire encoding of Raft messages, and the checksummed frame they travel in.

Frame (big-endian)::

    u32 length | u32 crc32(payload) | payload

Payload: a fixed header (type, to, from, term, log_term, index, commit, reject,
reject_hint), the context, the entries (term, index, type, data each), and an optional
snapshot (index, term, voters, learners, data). Every variable part is
length-prefixed. A frame that fails its checksum or does not parse raises
:class:`WireError`; the transport drops the connection (TCP already orders and
deduplicates bytes, so the checksum guards against corruption by buggy middleboxes,
memory errors and our own framing bugs).
"""

from __future__ import annotations

import struct
import zlib
from typing import List, Optional, Tuple

from .errors import RaftError
from .types import (ConfState, Entry, EntryType, Message, MsgType, Snapshot,
                    SnapshotMetadata)

# a snapshot travels as one message, so its frame may be as large as a store snapshot;
# every other message is far smaller. The limits stop a corrupt length from making the
# reader allocate (and wait) without bound: a frame longer than MAX_MESSAGE must say
# MsgSnap in its first byte (check_big_frame).
MAX_FRAME = 1 << 30
MAX_MESSAGE = 64 << 20

_FRAME = struct.Struct(">II")
_HEAD = struct.Struct(">BQQQQQQBQ")   # type to from term log_term index commit reject hint
_U32 = struct.Struct(">I")
_ENT = struct.Struct(">QQBI")         # term index type len(data)
_SNAP = struct.Struct(">QQII")        # index term n_voters n_learners


class WireError(RaftError):
    """A frame or message on the wire is corrupt or malformed."""


def encode_message(m: Message) -> bytes:
    """The wire bytes of m (without the frame). O(size of m)."""
    parts = [_HEAD.pack(int(m.type), m.to, m.frm, m.term, m.log_term, m.index, m.commit,
                        1 if m.reject else 0, m.reject_hint),
             _U32.pack(len(m.context)), m.context, _U32.pack(len(m.entries))]
    for e in m.entries:
        parts.append(_ENT.pack(e.term, e.index, int(e.type), len(e.data)))
        parts.append(e.data)
    if m.snapshot is None:
        parts.append(b"\0")
    else:
        meta = m.snapshot.metadata
        cs = meta.conf_state
        parts.append(b"\1")
        parts.append(_SNAP.pack(meta.index, meta.term, len(cs.voters), len(cs.learners)))
        parts.append(struct.pack(f">{len(cs.voters) + len(cs.learners)}Q",
                                 *cs.voters, *cs.learners))
        parts.append(_U32.pack(len(m.snapshot.data)))
        parts.append(m.snapshot.data)
    return b"".join(parts)


class _Reader:
    __slots__ = ("buf", "off")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.off = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.off + n > len(self.buf):
            raise WireError(f"message truncated: need {n} bytes at {self.off} of {len(self.buf)}")
        b = self.buf[self.off:self.off + n]
        self.off += n
        return b

    def unpack(self, st: struct.Struct) -> Tuple:
        return st.unpack(self.take(st.size))


def decode_message(buf: bytes) -> Message:
    """Parse wire bytes into a Message; WireError if malformed. O(len(buf))."""
    r = _Reader(buf)
    t, to, frm, term, log_term, index, commit, reject, hint = r.unpack(_HEAD)
    try:
        mtype = MsgType(t)
    except ValueError:
        raise WireError(f"unknown message type {t}") from None
    ctx = bytes(r.take(r.unpack(_U32)[0]))
    entries: List[Entry] = []
    for _ in range(r.unpack(_U32)[0]):
        et, ei, ety, n = r.unpack(_ENT)
        if ety not in (0, 1):
            raise WireError(f"unknown entry type {ety}")
        entries.append(Entry(et, ei, bytes(r.take(n)), EntryType(ety)))
    snap: Optional[Snapshot] = None
    flag = r.take(1)
    if flag == b"\1":
        si, st, nv, nl = r.unpack(_SNAP)
        ids = struct.unpack(f">{nv + nl}Q", r.take(8 * (nv + nl)))
        data = bytes(r.take(r.unpack(_U32)[0]))
        snap = Snapshot(data, SnapshotMetadata(si, st, ConfState(ids[:nv], ids[nv:])))
    elif flag != b"\0":
        raise WireError("bad snapshot flag")
    if r.off != len(buf):
        raise WireError(f"{len(buf) - r.off} trailing bytes after message")
    return Message(mtype, to=to, frm=frm, term=term, log_term=log_term, index=index,
                   entries=entries, commit=commit, snapshot=snap, reject=bool(reject),
                   reject_hint=hint, context=ctx)


def frame(payload: bytes) -> bytes:
    """payload with its length and checksum in front. O(len(payload))."""
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


FRAME_HEADER = _FRAME.size


def parse_frame_header(h: bytes) -> Tuple[int, int]:
    """(length, crc) of a frame header; rejects absurd lengths before allocating."""
    length, crc = _FRAME.unpack(h)
    if length > MAX_FRAME:
        raise WireError(f"frame of {length} bytes exceeds the {MAX_FRAME} limit")
    return length, crc


def check_big_frame(length: int, first: bytes) -> None:
    """A frame longer than MAX_MESSAGE is a snapshot or corrupt (WireError)."""
    if length > MAX_MESSAGE and first != bytes([int(MsgType.SNAP)]):
        raise WireError(f"frame of {length} bytes exceeds the {MAX_MESSAGE}-byte limit "
                        f"of a message other than a snapshot")


def check_frame(payload: bytes, crc: int) -> bytes:
    """payload if it matches crc, else WireError. O(len(payload))."""
    if zlib.crc32(payload) != crc:
        raise WireError("frame checksum mismatch")
    return payload
