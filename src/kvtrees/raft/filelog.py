"""A durable Raft log: an append-only file of checksummed records plus a snapshot file.

Directory layout::

    raft.log   b"KVRAFTL1" then records, appended, fsynced once per save()
    raft.snap  the newest snapshot (written to raft.snap.tmp, fsynced, renamed)

Record framing (big-endian)::

    u32 length | u32 crc32(length) | u32 crc32(type + payload) | u8 type | payload

The length has its own checksum so that a flipped length is reported as corruption
instead of being mistaken for a torn tail. Record types: ENTRY (term, index, entry
type, data; an entry at index i replaces any entries >= i), HARD_STATE (term, vote,
commit), SNAPSHOT (index, term: the log continues after this snapshot).

Recovery reads the snapshot, then every record in order, keeping the whole log in a
:class:`MemoryStorage` (as etcd keeps its WAL in a MemoryStorage):

* a tail that ends inside a record (a write torn by a crash: never fsynced, so never
  acknowledged) is cut off, and the prefix before it is recovered;
* any complete record with a bad checksum, an unknown type or an impossible index is
  :class:`RaftLogCorruptionError` naming the file and offset, unless ``repair=True``,
  which truncates the log at the first bad record (an explicit operator decision:
  what followed it is lost).

A failed write or fsync is fatal for the handle (the page cache may have dropped the
data): every later call raises :class:`RaftLogStorageError` until reopened.

``compact`` and installing a snapshot rewrite the log file (tmp + fsync + rename +
directory fsync), so its size stays proportional to the live entries.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Callable, Optional, Sequence

from .errors import (LogCompactedError, RaftError, RaftLogCorruptionError,
                     RaftLogStorageError, SnapshotOutOfDateError)
from .storage import MemoryStorage
from .types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata

LOG_MAGIC = b"KVRAFTL1"
SNAP_MAGIC = b"KVRAFTS1"
LOG_NAME = "raft.log"
SNAP_NAME = "raft.snap"

REC_ENTRY = 1
REC_HARD_STATE = 2
REC_SNAPSHOT = 3

_HDR = struct.Struct(">III")          # length, crc(length), crc(type + payload)
_LEN = struct.Struct(">I")
_ENTRY = struct.Struct(">QQB")        # term, index, entry type
_HS = struct.Struct(">QQQ")           # term, vote, commit
_SNAPREF = struct.Struct(">QQ")       # index, term
_SNAPHDR = struct.Struct(">IQQII")    # crc of the rest, index, term, n voters, n learners


def _frame(rtype: int, payload: bytes) -> bytes:
    body = bytes([rtype]) + payload
    n = _LEN.pack(len(body))
    return _HDR.pack(len(body), zlib.crc32(n), zlib.crc32(body)) + body


def encode_entry(e: Entry) -> bytes:
    """One ENTRY record."""
    return _frame(REC_ENTRY, _ENTRY.pack(e.term, e.index, int(e.type)) + e.data)


def encode_hard_state(hs: HardState) -> bytes:
    """One HARD_STATE record."""
    return _frame(REC_HARD_STATE, _HS.pack(hs.term, hs.vote, hs.commit))


def encode_snapshot_ref(index: int, term: int) -> bytes:
    """The SNAPSHOT record that opens every log file."""
    return _frame(REC_SNAPSHOT, _SNAPREF.pack(index, term))


def encode_snapshot_file(s: Snapshot) -> bytes:
    """The bytes of raft.snap for s. O(len(s.data))."""
    cs = s.metadata.conf_state
    ids = struct.pack(f">{len(cs.voters) + len(cs.learners)}Q", *cs.voters, *cs.learners)
    rest = struct.pack(">QQII", s.metadata.index, s.metadata.term, len(cs.voters),
                       len(cs.learners)) + ids + s.data
    return SNAP_MAGIC + struct.pack(">I", zlib.crc32(rest)) + rest


def decode_snapshot_file(buf: bytes, path: str) -> Snapshot:
    """Parse raft.snap; RaftLogCorruptionError on any damage. O(len(buf))."""
    if len(buf) < len(SNAP_MAGIC) + _SNAPHDR.size or buf[:len(SNAP_MAGIC)] != SNAP_MAGIC:
        raise RaftLogCorruptionError(f"{path}: not a Raft snapshot file (bad magic or short)")
    crc, index, term, nv, nl = _SNAPHDR.unpack_from(buf, len(SNAP_MAGIC))
    rest = buf[len(SNAP_MAGIC) + 4:]
    if zlib.crc32(rest) != crc:
        raise RaftLogCorruptionError(f"{path}: snapshot checksum mismatch")
    off = _SNAPHDR.size - 4
    ids_end = off + 8 * (nv + nl)
    if ids_end > len(rest):
        raise RaftLogCorruptionError(f"{path}: snapshot member list truncated")
    ids = struct.unpack_from(f">{nv + nl}Q", rest, off)
    meta = SnapshotMetadata(index, term, ConfState(ids[:nv], ids[nv:]))
    return Snapshot(bytes(rest[ids_end:]), meta)


class FileIO:
    """The system calls the log uses; tests substitute a failing one."""

    write: Callable[[int, bytes], int] = staticmethod(os.write)
    fsync: Callable[[int], None] = staticmethod(os.fsync)


class _Replay:
    """Reads a log file's records into a MemoryStorage (recovery, step 1)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mem = MemoryStorage()

    def run(self, buf: bytes, repair: bool) -> int:
        """Apply every good record; return where the good part ends (-1: no header)."""
        if buf[:len(LOG_MAGIC)] != LOG_MAGIC:
            if len(buf) < len(LOG_MAGIC) and LOG_MAGIC.startswith(buf):
                return -1  # torn while creating the file
            raise RaftLogCorruptionError(f"{self.path}: bad magic, not a Raft log")
        off = len(LOG_MAGIC)
        while off < len(buf):
            try:
                end = self._record(buf, off)
            except RaftLogCorruptionError:
                if repair:
                    return off
                raise
            if end is None:
                return off  # torn tail: never synced
            off = end
        return off

    def _record(self, buf: bytes, off: int) -> Optional[int]:
        if len(buf) - off < _HDR.size:
            return None  # fewer bytes than a header: a torn write
        length, len_crc, crc = _HDR.unpack_from(buf, off)
        if zlib.crc32(_LEN.pack(length)) != len_crc:
            if not any(buf[off:]):
                return None  # a zero-filled tail: the extent was allocated, not written
            raise RaftLogCorruptionError(f"{self.path}: record length checksum mismatch at "
                                         f"offset {off}")
        start, end = off + _HDR.size, off + _HDR.size + length
        if end > len(buf):
            return None  # the record was being written when the machine stopped
        body = buf[start:end]
        if length == 0 or zlib.crc32(body) != crc:
            raise RaftLogCorruptionError(f"{self.path}: record checksum mismatch at offset {off}")
        self._apply(body[0], body[1:], off)
        return end

    def _apply(self, rtype: int, payload: bytes, off: int) -> None:
        mem = self.mem
        if rtype == REC_ENTRY and len(payload) >= _ENTRY.size:
            term, index, etype = _ENTRY.unpack_from(payload)
            if etype not in (EntryType.NORMAL, EntryType.CONF_CHANGE):
                raise RaftLogCorruptionError(f"{self.path}: entry type {etype} at offset {off}")
            if index < mem.first_index():
                return
            if index > mem.last_index() + 1:
                raise RaftLogCorruptionError(f"{self.path}: entry {index} after "
                                             f"{mem.last_index()} leaves a gap (offset {off})")
            mem.append([Entry(term, index, bytes(payload[_ENTRY.size:]), EntryType(etype))])
        elif rtype == REC_HARD_STATE and len(payload) == _HS.size:
            mem.hard_state = HardState(*_HS.unpack(payload))
        elif rtype == REC_SNAPSHOT and len(payload) == _SNAPREF.size:
            index, term = _SNAPREF.unpack(payload)
            if mem.last_index() != 0 or off != len(LOG_MAGIC):
                raise RaftLogCorruptionError(f"{self.path}: snapshot record not first (offset {off})")
            if index:
                mem.apply_snapshot(Snapshot(b"", SnapshotMetadata(index, term)))
        else:
            raise RaftLogCorruptionError(f"{self.path}: bad record type {rtype} "
                                         f"({len(payload)} bytes) at offset {off}")


class FileLogStorage(MemoryStorage):
    """A Raft Storage whose writes are durable when they return.

    Reads are served from memory (O(1) / O(result)); ``save`` is one write() and one
    fsync() of O(bytes) work. Not thread-safe: one Ready loop owns it."""

    def __init__(self, directory: str, repair: bool = False, io: Optional[FileIO] = None) -> None:
        super().__init__()
        self.dir = directory
        self.io = io or FileIO()
        self.log_path = os.path.join(directory, LOG_NAME)
        self.snap_path = os.path.join(directory, SNAP_NAME)
        self.fsyncs = 0
        self._failed: Optional[str] = None
        self._fd = -1
        os.makedirs(directory, exist_ok=True)
        self._recover(repair)

    # ---- recovery --------------------------------------------------------------------

    def _recover(self, repair: bool) -> None:
        snap = None
        if os.path.exists(self.snap_path):
            with open(self.snap_path, "rb") as f:
                snap = decode_snapshot_file(f.read(), self.snap_path)
        if not os.path.exists(self.log_path):
            if snap is not None:
                MemoryStorage.apply_snapshot(self, snap)
            self._rewrite_log([], None)
            return
        with open(self.log_path, "rb") as f:
            buf = f.read()
        replayed = _Replay(self.log_path)
        good_end = replayed.run(buf, repair)
        self._adopt(replayed, snap)
        if good_end < 0:  # not even the file header survived: start the file again
            self._rewrite_log(self._ents[1:], self.hard_state)
            return
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND)
        if good_end < len(buf):
            os.ftruncate(self._fd, good_end)
            self._sync(self._fd)

    def _adopt(self, r: "_Replay", snap: Optional[Snapshot]) -> None:
        """Combine the snapshot file with the replayed log.

        The snapshot file may be newer than the snapshot the log starts after (a crash
        between writing raft.snap and rewriting raft.log). The log's entries after the
        snapshot are kept only if the log agrees with the snapshot at its index;
        otherwise they were a conflicting suffix the snapshot replaced."""
        mem = r.mem
        base = mem.first_index() - 1
        if snap is None:
            if base != 0:
                raise RaftLogCorruptionError(f"{self.log_path}: log starts after snapshot "
                                             f"{base} but {self.snap_path} is missing")
            self._ents = mem._ents
        else:
            si, st = snap.metadata.index, snap.metadata.term
            if si < base or (si == base and mem.term(base) != st):
                raise RaftLogCorruptionError(
                    f"{self.log_path}: log starts after ({base}, {mem.term(base)}) but "
                    f"{self.snap_path} holds ({si}, {st})")
            MemoryStorage.apply_snapshot(self, snap)
            if base <= si <= mem.last_index() and mem.term(si) == st:
                self._ents.extend(mem._ents[si - base + 1:])
        hs = mem.hard_state
        commit = min(max(hs.commit, self.first_index() - 1), self.last_index())
        self.hard_state = HardState(hs.term, hs.vote, commit)

    # ---- writing ---------------------------------------------------------------------

    def save(self, hard_state: Optional[HardState], entries: Sequence[Entry],
             snapshot: Optional[Snapshot] = None, sync: bool = True) -> None:
        """Persist one Ready (snapshot, then entries, then hard state) durably: returns
        after the fsync. O(bytes written).

        ``sync=False`` (Ready.must_sync is False: only the commit index moved) writes
        without an fsync; the next synced save covers it, and a crash before that
        loses only a commit index, which Raft learns again."""
        self._check_usable()
        if snapshot is not None and not snapshot.is_empty():
            self._save_snapshot(snapshot, entries, hard_state)
            return
        if entries and entries[0].index > self.last_index() + 1:
            # Checked before writing: a gap on disk would fail the next recovery.
            raise RaftError(f"append leaves a gap: last {self.last_index()}, "
                            f"new {entries[0].index}")
        buf = b"".join(encode_entry(e) for e in entries)
        if hard_state is not None:
            buf += encode_hard_state(hard_state)
        if not buf:
            return
        self._write_all(self._fd, buf)
        if sync or entries:
            self._sync(self._fd)
        MemoryStorage.append(self, list(entries))
        if hard_state is not None:
            self.hard_state = hard_state.copy()

    def append(self, entries: Sequence[Entry]) -> None:
        """Durable append (Storage write side). O(bytes)."""
        self.save(None, entries)

    def set_hard_state(self, hs: HardState) -> None:
        """Durable hard-state write. O(1) plus one fsync."""
        self.save(hs, [])

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Durably replace the log by snap (a follower installing it)."""
        self.save(None, [], snap)

    def create_snapshot(self, index: int, conf_state: Optional[ConfState],
                        data: bytes) -> Snapshot:
        """Record a snapshot of the application at index, durably. O(len(data))."""
        self._check_usable()
        old = self._snapshot
        snap = MemoryStorage.create_snapshot(self, index, conf_state, data)
        try:
            self._write_snapshot_file(snap)
        except OSError:
            self._snapshot = old
            raise
        return snap

    def compact(self, compact_index: int) -> None:
        """Drop entries before compact_index, in memory and (by rewriting) on disk.
        The snapshot must cover them: compact_index <= snapshot index. O(live entries)."""
        self._check_usable()
        if compact_index > self._snapshot.metadata.index:
            raise LogCompactedError(f"compact to {compact_index} passes the snapshot at "
                                    f"{self._snapshot.metadata.index}; create a snapshot first")
        MemoryStorage.compact(self, compact_index)
        self._rewrite_log(self._ents[1:], self.hard_state)

    def _save_snapshot(self, snap: Snapshot, entries: Sequence[Entry],
                       hs: Optional[HardState]) -> None:
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(f"snapshot at {snap.metadata.index} is not newer "
                                         f"than {self._snapshot.metadata.index}")
        self._write_snapshot_file(snap)
        MemoryStorage.apply_snapshot(self, snap)
        MemoryStorage.append(self, list(entries))
        if hs is not None:
            self.hard_state = hs.copy()
        self._rewrite_log(self._ents[1:], self.hard_state)

    def _write_snapshot_file(self, snap: Snapshot) -> None:
        self._write_file_atomically(self.snap_path, encode_snapshot_file(snap))

    def _rewrite_log(self, entries: Sequence[Entry], hs: Optional[HardState]) -> None:
        meta = self._snapshot.metadata
        parts = [LOG_MAGIC, encode_snapshot_ref(meta.index, meta.term)]
        parts.extend(encode_entry(e) for e in entries)
        if hs is not None and not hs.is_empty():
            parts.append(encode_hard_state(hs))
        self._write_file_atomically(self.log_path, b"".join(parts))
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND)

    def _write_file_atomically(self, path: str, data: bytes) -> None:
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self._write_all(fd, data)
            self._sync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            self._sync(dfd)
        finally:
            os.close(dfd)

    def _write_all(self, fd: int, buf: bytes) -> None:
        view = memoryview(buf)
        try:
            while view:
                n = self.io.write(fd, view)
                view = view[n:]
        except OSError as e:
            self._failed = f"write failed: {e}"
            raise RaftLogStorageError(f"{self.dir}: {self._failed}") from e

    def _sync(self, fd: int) -> None:
        try:
            self.io.fsync(fd)
        except OSError as e:
            self._failed = f"fsync failed: {e}"
            raise RaftLogStorageError(f"{self.dir}: {self._failed}; reopen the log") from e
        self.fsyncs += 1

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise RaftLogStorageError(f"{self.dir}: unusable after an earlier failure "
                                      f"({self._failed}); reopen the log")
        if self._fd < 0:
            raise RaftLogStorageError(f"{self.dir}: the log is closed")

    def close(self) -> None:
        """Close the file; reads keep working on memory. Idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "FileLogStorage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def persist_ready(storage: FileLogStorage, rd) -> None:
    """Step 1 of the Ready contract for a FileLogStorage: one durable save."""
    storage.save(rd.hard_state, rd.entries, rd.snapshot, sync=rd.must_sync)


__all__ = ["FileLogStorage", "FileIO", "persist_ready", "LOG_NAME", "SNAP_NAME"]
