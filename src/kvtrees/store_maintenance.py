"""The store's maintenance: hash_kv, status, engine counters, snapshot, check
(part of Store)."""

from __future__ import annotations

import os
import struct
from typing import NamedTuple, Optional

from . import mvcc
from .errors import CorruptionError


class Status(NamedTuple):
    revision: int
    compact_revision: int
    db_size: int
    engine: str
    leases: int
    watchers: int
    version: str


class StoreMaintenance:
    """Store's maintenance methods."""

    def hash_kv(self, revision: int = 0):
        """(CRC32C over every stored version <= revision, compact_revision, revision):
        equal for equal histories on both engines."""
        rev = self._read_rev(revision)
        crc = 0
        upd = _crc32c()
        for ek, ev in self._eng.items(mvcc.KV, mvcc.KV_END):
            _, mod = mvcc.split_kv_key(ek)
            if mod <= rev:
                crc = upd(crc, struct.pack(">II", len(ek), len(ev)) + bytes(ek) + bytes(ev))
        self._check_compacted(rev)
        return crc, self._compact_rev, rev

    def status(self) -> Status:
        self._check_open()
        st = self._eng.stats()
        import kvtrees
        return Status(self._rev, self._compact_rev,
                      int(st.get("file_size", 0)) + int(st.get("wal_size", 0)),
                      self._engine_name, len(self._leases.ids()), self._hub.count(),
                      getattr(kvtrees, "__version__", "0"))

    def engine_stats(self) -> dict:
        """The engine's I/O, cache and tree counters (Engine.stats(): bytes written and
        read, fsyncs, cache hits and misses, ...). O(1)."""
        self._check_open()
        return self._eng.stats()

    def snapshot(self, dest_path) -> None:
        """Write a consistent copy of the store (all keys, history, leases) to a new
        directory that kvtrees.open() can open. Holds the writer lock while copying."""
        if self._engine_factory is None:
            raise ValueError("this store was not opened by kvtrees.open(): no engine factory")
        dest = os.fspath(dest_path)
        if os.path.exists(dest) and os.listdir(dest):
            raise FileExistsError("snapshot destination %r is not empty" % dest)
        with self._writing():   # no write (native puts included) while copying
            self._check_open()
            out = self._engine_factory(dest)
            try:
                batch: list = []
                for k, v in self._eng.items():
                    batch.append((bytes(k), bytes(v)))
                    if len(batch) >= 1000:
                        _write_all(out, batch)
                        batch = []
                _write_all(out, batch)
                out.checkpoint()
            finally:
                out.close()

    def defragment(self, batch: int = 1000) -> int:
        """Give back the file space that deleted and compacted data left free; returns
        db_size afterwards. O(n).

        On the B+tree every entry is written again with its own value, a batch at a
        time under the writer lock (writes wait per batch, reads go on and see the same
        data throughout), with a checkpoint after each: copy-on-write moves each page to
        the lowest free page and the checkpoint trims the free tail off the file. The
        fractal tree writes every node back as a fresh blob anyway and rewriting would
        only add buffered messages, so there it is a checkpoint."""
        self._check_open()
        if self._engine_name == "btree":
            start: Optional[bytes] = b""
            while start is not None:
                with self._writing():
                    self._check_open()
                    start = self._rewrite_from(start, batch)
                    self._eng.checkpoint()
        else:
            with self._writing():
                self._check_open()
                self._eng.checkpoint()
        return self.status().db_size

    def _rewrite_from(self, start: bytes, n: int) -> Optional[bytes]:
        """Write up to n entries from start again, unchanged; the key to go on from
        (None: done). Caller holds the writer lock."""
        items: list = []
        nxt = None
        with self._eng.items(start or None) as it:     # closed before the batch
            for k, v in it:
                if len(items) == n:
                    nxt = bytes(k)
                    break
                items.append((bytes(k), bytes(v)))
        _write_all(self._eng, items)
        return nxt

    def check(self) -> None:
        """Engine check plus the store's own invariants; raises CorruptionError."""
        self._check_open()
        self._eng.check()
        compact_done = self._meta_int(mvcc.META_COMPACT_DONE, 0)
        for ek, ev in self._eng.items(mvcc.KV, mvcc.KV_END):
            try:
                e = mvcc.decode_entry(bytes(ek), bytes(ev))
            except ValueError as err:
                raise CorruptionError("store: %s" % err) from None
            if e.mod > self._head:
                raise CorruptionError("store: key %r has mod_revision %d > revision %d"
                                      % (e.key, e.mod, self._head))
            if not e.tombstone and not (e.version >= 1 and 0 < e.create <= e.mod):
                raise CorruptionError("store: key %r version %d create %d mod %d invalid"
                                      % (e.key, e.version, e.create, e.mod))
        for rk, key in self._eng.items(mvcc.REVLOG, mvcc.REVLOG + b"\xff"):
            rev = int.from_bytes(rk[1:9], "big")
            if len(rk) != 13 or rev > self._head:
                raise CorruptionError("store: malformed revision-log entry %r" % (rk,))
            if rev > max(compact_done, self._compact_rev) and \
                    self._eng.get(mvcc.kv_key(bytes(key), rev)) is None:
                raise CorruptionError("store: revision %d names key %r, which has no "
                                      "version at that revision" % (rev, key))
        for ak, _ in self._eng.items(mvcc.ATTACH, mvcc.ATTACH + b"\xff"):
            if len(ak) < 10 or int.from_bytes(ak[1:9], "big") not in self._leases:
                raise CorruptionError("store: key attached to unknown lease %r" % (ak[:9],))


def _write_all(eng, items) -> None:
    if not items:
        return
    with eng.batch() as b:
        for k, v in items:
            b.put(k, v)


_crc_fn = None


def _crc32c():
    """crc(crc, data) -> crc: the native kvt_crc32c, else the crc32c package."""
    global _crc_fn
    if _crc_fn is None:
        try:
            from ._native import lib, ffi

            def native(crc, data):
                return lib.kvt_crc32c(crc, ffi.from_buffer(data), len(data))
            _crc_fn = native
        except ImportError:
            try:
                import crc32c as _c

                def pkg(crc, data):
                    return _c.crc32c(data, crc)
            except ImportError:
                import google_crc32c as _g

                def pkg(crc, data):
                    return _g.extend(crc, data)
            _crc_fn = pkg
    return _crc_fn
