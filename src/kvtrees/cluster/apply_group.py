"""Applying a run of plain puts (no lease, distinct keys) from one Ready as one engine
batch: each put gets its own revision, in log order, exactly as one apply_at per entry
would give it, but the run costs one batch commit and one applied-index stamp (the
index of its last entry) instead of one each. The common shape of a write-heavy load;
anything else is applied entry by entry (ClusterStore.apply_entries)."""

from __future__ import annotations

from typing import List, Tuple

from .. import mvcc
from ..mvcc import Entry, PutResult
from ..requests import PutRequest

_new_tuple = tuple.__new__


def groupable(req) -> bool:
    """Can this request join a run? (A lease needs the lease checks and attach keys.)"""
    return type(req) is PutRequest and not req.lease


def apply_puts(store, items: List[Tuple[int, PutRequest, dict]]) -> List[PutResult]:
    """Apply [(index, put, extra engine ops)] with distinct keys at consecutive
    revisions in one atomic engine batch that also records the last index as applied.
    O(sum of the puts) and one commit."""
    with store._writing():
        store._check_open()
        head = store._head
        ops: dict = {}
        changes = []
        results = []
        live = store._live
        for n, (index, req, extra) in enumerate(items):
            k, v, _, prev_kv = req
            rev = head + 1 + n
            prev = live(k, head)          # distinct keys: the engine at head is current
            if prev is not None:
                create, version = prev.create, prev.version + 1
                if prev.lease:
                    ops[mvcc.ATTACH + mvcc.be64(prev.lease) + k] = None
            else:
                create, version = rev, 1
            ops[mvcc.kv_key(k, rev)] = mvcc.encode_entry(v, create, version, 0, False)
            ops[mvcc.revlog_key(rev, 0)] = k
            ops.update(extra)
            changes.append((rev, Entry(k, rev, False, create, version, 0, v), prev))
            results.append(_new_tuple(PutResult, (rev, prev.to_kv() if prev_kv and prev
                                                  else None)))
        ops[mvcc.META_APPLIED] = mvcc.be64(items[-1][0])
        with store._eng.batch() as b:
            for key, val in ops.items():
                b.delete(key) if val is None else b.put(key, val)
        hub, core = store._hub, store._core
        for rev, e, prev in changes:
            hub.record(rev, [(e, prev)])
            core.note(e.key, rev)
        core.set_head(head + len(items))
        store._applied = items[-1][0]
    return results
