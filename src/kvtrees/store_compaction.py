"""The store's compaction: the target first, then bounded, resumable steps (part of Store)."""

from __future__ import annotations

import itertools
from typing import Optional

from . import mvcc
from .errors import CompactedError, FutureRevisionError
from .requests import CompactRequest, CompactStepRequest


class StoreCompaction:
    """Store's compaction: compact() and its apply handlers."""

    def compact(self, revision: int, physical: bool = True) -> None:
        """Drop versions <= revision except each live key's latest. Reads below revision
        raise CompactedError at once; the physical work runs in bounded batches that
        release the writer lock in between, and resumes on open after a crash."""
        if isinstance(revision, bool) or not isinstance(revision, int):
            raise TypeError("revision must be an int")
        if revision < 0:
            raise ValueError("revision must be >= 0")
        self.apply(CompactRequest(revision))
        if physical:
            self._finish_compaction()

    def _apply_compact(self, req: CompactRequest) -> None:
        revision = req.revision
        with self._writing():
            self._check_open()
            if revision <= self._compact_rev:
                raise CompactedError("required revision %d has been compacted" % revision,
                                     self._compact_rev)
            if revision > self._rev:
                raise FutureRevisionError("required revision %d is a future revision"
                                          % revision)
            with self._eng.batch() as b:    # persist the target first: resumable
                b.put(mvcc.META_COMPACT, mvcc.be64(revision))
                self._stamp_batch(b)
            self._compact_rev = revision

    def _finish_compaction(self) -> None:
        with self._compact_lock:
            target = self._compact_rev
            done = self._meta_int(mvcc.META_COMPACT_DONE, 0)
            if done >= target:
                return
            while self.apply(CompactStepRequest(target, mvcc.revlog_key(target, 0))):
                pass
            self.apply(CompactStepRequest(target, mvcc.revlog_key(target + 1, 0), True))

    def _apply_compact_step(self, req: CompactStepRequest) -> bool:
        """Process up to compact_batch revision-log entries below `upto`; False when none
        were left. Log entries below target go; the ones at target stay (a watch may start
        at the compacted revision) but their keys are processed too."""
        target, upto, final = req
        with self._writing():
            self._check_open()
            limit = None if final else self._compact_batch
            entries = list(itertools.islice(self._eng.items(mvcc.REVLOG, upto), limit))
            ops: dict[bytes, Optional[bytes]] = {}
            for rk, key in entries:
                rev = int.from_bytes(rk[1:9], "big")
                if rev < target:
                    ops[rk] = None
                self._compact_key(bytes(key), rev, target, ops)
            if final:
                ops[mvcc.META_COMPACT_DONE] = mvcc.be64(target)
            if self._stamp is not None:
                self._stamp_ops(ops)
            if ops:
                with self._eng.batch() as b:
                    for k, v in ops.items():
                        b.delete(k) if v is None else b.put(k, v)
            return bool(entries)

    def _compact_key(self, key: bytes, rev: int, target: int, ops: dict) -> None:
        """If rev is key's newest version <= target, delete every older version (and the
        version itself if it is a tombstone)."""
        e = self._latest(key, target)
        if e is None or e.mod != rev:
            return
        for ek in mvcc.older_versions(self._eng, key, rev):
            ops[ek] = None
        if e.tombstone:
            ops[mvcc.kv_key(key, rev)] = None
