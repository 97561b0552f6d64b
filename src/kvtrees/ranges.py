"""etcd's range post-processing, shared by reads and txn reads: limit, sort order and
target, keys_only, the mod/create revision filters, and count/more. Pure functions."""

from __future__ import annotations

import itertools

from . import mvcc
from .mvcc import Entry, KeyValue
from .txn import to_key

__all__ = ["check_limit", "check_count_limit", "check_sort", "order", "revision_filter",
           "select", "strip_early", "without_value", "SORT_TARGETS", "prefix_bounds",
           "opt_key"]

SORT_TARGETS = {"key": lambda kv: kv.key, "version": lambda kv: kv.version,
                "create": lambda kv: kv.create_revision, "mod": lambda kv: kv.mod_revision,
                "value": lambda kv: kv.value}


def check_limit(limit) -> int:
    """limit: None or 0 (no limit) or a positive int."""
    if limit is None:
        return 0
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError("limit must be an int or None")
    if limit < 0:
        raise ValueError("limit must be >= 0")
    return limit


def strip_early(keys_only: bool, sort_target: str) -> bool:
    """Drop values while scanning, unless the sort needs them: etcd sorts first and
    clears values for keys_only last."""
    return keys_only and sort_target != "value"


def without_value(kv: KeyValue) -> KeyValue:
    return KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def check_sort(sort_order, sort_target) -> None:
    order(sort_order, sort_target)


def order(sort_order, sort_target) -> str:
    if sort_target not in SORT_TARGETS:
        raise ValueError("sort_target must be one of %s" % ", ".join(SORT_TARGETS))
    if sort_order in (None, "none"):
        return "ascend"
    if sort_order not in ("ascend", "descend"):
        raise ValueError("sort_order must be None, 'ascend' or 'descend'")
    return sort_order


def revision_filter(min_mod_revision=None, max_mod_revision=None, min_create_revision=None,
                     max_create_revision=None):
    bounds = (min_mod_revision, max_mod_revision, min_create_revision, max_create_revision)
    if all(not b for b in bounds):
        return None
    lo_m, hi_m, lo_c, hi_c = (b or 0 for b in bounds)

    def keep(kv) -> bool:
        return ((not lo_m or kv.mod_revision >= lo_m) and (not hi_m or kv.mod_revision <= hi_m)
                and (not lo_c or kv.create_revision >= lo_c)
                and (not hi_c or kv.create_revision <= hi_c))
    return keep


def check_count_limit(limit) -> int:
    """Range's limit: a non-negative int (0: no limit)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError("limit must be a non-negative int")
    return limit


def select(entries, limit, count_only, keys_only, sort_order, sort_target, filt):
    """etcd's range post-processing: count is every key in range (before filters), kvs are
    filtered, sorted and cut to limit, more says whether the cut dropped any."""
    check_count_limit(limit)
    direction = order(sort_order, sort_target)
    streaming = filt is None and sort_target == "key"
    if count_only:
        return [], sum(1 for _ in entries), False
    if streaming:
        # the common case, without per-item Python: keep limit + 1, count the rest
        it = iter(entries)
        kvs = list(itertools.islice(it, limit + 1)) if limit else list(it)
        count = len(kvs) + sum(1 for _ in it)
        kvs = [e.to_kv(keys_only) if isinstance(e, Entry) else e for e in kvs]
        more = bool(limit) and len(kvs) > limit
        return (kvs[:limit] if limit else kvs), count, more
    early = strip_early(keys_only, sort_target)
    kvs, count = [], 0
    for e in entries:
        count += 1
        kv = e.to_kv(early) if isinstance(e, Entry) else e
        if filt is None or filt(kv):
            kvs.append(kv)
    kvs.sort(key=SORT_TARGETS[sort_target], reverse=(direction == "descend"))
    more = bool(limit) and len(kvs) > limit
    if limit:
        kvs = kvs[:limit]
    if keys_only and not early:
        kvs = [without_value(kv) for kv in kvs]     # sorted by value, then cleared
    return kvs, count, more


def prefix_bounds(prefix) -> tuple:
    """etcd's [prefix, prefix_end) range; the empty prefix means every key."""
    if isinstance(prefix, (str, bytes, bytearray, memoryview)) and len(prefix) == 0:
        return b"\x00", b"\x00"
    p = to_key(prefix)
    return p, mvcc.prefix_end(p) or b"\x00"


def opt_key(k):
    return None if k is None else to_key(k)
