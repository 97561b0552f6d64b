"""The store's reads: point reads, ranges and their prefix/all forms (part of Store)."""

from __future__ import annotations

from typing import Iterator, Optional

from . import mvcc
from .mvcc import Entry, RangeResult
from . import ranges
from .ranges import prefix_bounds
from .txn import to_key


class StoreReads:
    """Store's read methods; they read at a fixed revision and take no lock."""

    def _latest(self, key: bytes, rev: int) -> Optional[Entry]:
        """Newest version of key <= rev (tombstones included), or None: one C call (one
        engine seek) on a native engine."""
        return self._core.get(key, rev)

    def _live(self, key: bytes, rev: int) -> Optional[Entry]:
        e = self._core.get(key, rev)
        return None if e is None or e.tombstone else e

    def read_barrier(self) -> None:
        """The point after which a read is linearizable: a single store has nothing to
        wait for (a replicated one waits for ReadIndex). O(1)."""
        self._check_open()

    def get(self, key, revision=None, serializable=False):
        """(value, KeyValue) of key at revision (default: current), (None, None) if absent.
        O(log n): one native call (one engine seek) on a native engine."""
        k = key if type(key) is bytes and key else to_key(key)
        core = self._core
        if revision or self._closed:
            rev = self._read_rev(revision)
            kv = core.get_kv(k, rev)
            if rev < self._compact_rev:     # compacted meanwhile: the read may be partial
                self._check_compacted(rev)
        else:       # the current revision, never below the compaction target
            kv = core.get_kv_visible(k)
        return (kv.value, kv) if kv is not None else (None, None)

    def range(self, key, range_end=None, revision=None, limit=0, count_only=False,
              keys_only=False, sort_order=None, sort_target="key", min_mod_revision=None,
              max_mod_revision=None, min_create_revision=None,
              max_create_revision=None, serializable=False) -> RangeResult:
        """etcd's Range: range_end None = the single key, b"\\0" = every key >= key.
        serializable: etcd's serializable read (a local read on a replicated store; every
        read of a single store is both)."""
        start = to_key(key)
        end = None if range_end is None else to_key(range_end)
        self._check_open()
        header_rev = self._rev      # the read is at header_rev (by default), so a watch
        rev = self._read_rev(revision or header_rev)   # from header_rev + 1 misses nothing
        filt = ranges.revision_filter(min_mod_revision, max_mod_revision, min_create_revision,
                                max_create_revision)
        found = self._native_range(start, end, rev, limit, count_only, keys_only, sort_order,
                                   sort_target, filt)
        if found is not None:
            kvs, count, more = found
            self._check_compacted(rev)
            return RangeResult(kvs, count, more, header_rev)
        kvs, count, more = ranges.select(self._kvs(start, end, rev, sort_order, sort_target,
                                             ranges.strip_early(keys_only, sort_target)),
                                   limit, count_only, keys_only, sort_order, sort_target,
                                   filt)
        self._check_compacted(rev)
        return RangeResult(kvs, count, more, header_rev)

    def _native_range(self, start, end, rev, limit, count_only, keys_only, sort_order,
                      sort_target, filt) -> Optional[tuple]:
        """(kvs, count, more) from one native call (kvt_mvcc_range) for a range in key
        order without revision filters, the common shape; None for any other (ranges.select
        then does the work in Python). O(versions in the range), none of it per key in
        Python but building the KeyValues returned."""
        if not self._native or end is None or filt is not None or sort_target != "key":
            return None
        if ranges.order(sort_order, sort_target) != "ascend":
            return None
        limit = ranges.check_count_limit(limit)
        lo, hi = mvcc.range_bounds(start, None if end == b"\x00" else end)
        if len(lo) > mvcc.MAX_ENGINE_KEY or len(hi) > mvcc.MAX_ENGINE_KEY:
            return None             # a bound the engine cannot take: the clamped scan
        kvs, count = self._core.range(lo, hi, rev, limit, keys_only, count_only)
        return kvs, count, bool(limit) and not count_only and count > limit

    def _kvs(self, start, end, rev, sort_order=None, sort_target="key", keys_only=False):
        """KeyValues of [start, end) at rev (end None: the single key start)."""
        if end is None:
            e = self._live(start, rev)
            return iter([e.to_kv(keys_only)] if e else [])
        reverse = ranges.order(sort_order, sort_target) == "descend" and sort_target == "key"
        return mvcc.scan_kvs(self._eng, start, None if end == b"\x00" else end, rev, reverse,
                             keys_only)

    def _iter_range(self, start, end, revision, sort_order, sort_target, keys_only, limit,
                    **filters) -> Iterator:
        """Validate everything and fix the read revision now, so bad arguments, a closed
        store and compacted/future revisions raise at the call (as etcd's unary Range
        does, and python-etcd3's before the first item); the iterator then streams."""
        limit = ranges.check_limit(limit)
        rev = self._read_rev(revision)
        order = ranges.order(sort_order, sort_target)
        filt = ranges.revision_filter(**filters)
        if sort_target == "key" and filt is None:
            return self._stream(start, end, rev, order, keys_only, limit)
        kvs, _, _ = ranges.select(self._kvs(start, end, rev, order, sort_target,
                                      ranges.strip_early(keys_only, sort_target)),
                            limit, False, keys_only, order, sort_target, filt)
        self._check_compacted(rev)
        return iter([(kv.value, kv) for kv in kvs])

    def _stream(self, start, end, rev, order, keys_only, limit) -> Iterator:
        """Key-ordered (value, KeyValue) pairs at rev: memory stays flat however many
        keys match."""
        n = 0
        for kv in self._kvs(start, end, rev, order, "key", keys_only):
            if limit and n >= limit:
                break
            n += 1
            yield kv.value, kv
        self._check_compacted(rev)

    def get_prefix(self, key_prefix, revision=None, sort_order=None, sort_target="key",
                   keys_only=False, limit=None, **filters) -> Iterator:
        p, end = prefix_bounds(key_prefix)
        ranges.check_sort(sort_order, sort_target)
        return self._iter_range(p, end, revision, sort_order, sort_target, keys_only, limit,
                                **filters)

    def get_range(self, range_start, range_end, revision=None, sort_order=None,
                  sort_target="key", keys_only=False, limit=None, **filters) -> Iterator:
        s, e = to_key(range_start), to_key(range_end)
        ranges.check_sort(sort_order, sort_target)
        return self._iter_range(s, e, revision, sort_order, sort_target, keys_only, limit,
                                **filters)

    def get_all(self, revision=None, sort_order=None, sort_target="key", keys_only=False,
                limit=None, **filters) -> Iterator:
        ranges.check_sort(sort_order, sort_target)
        return self._iter_range(b"\x00", b"\x00", revision, sort_order, sort_target,
                                keys_only, limit, **filters)
