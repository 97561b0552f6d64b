"""Store writes as values: every write of a Store is one of these requests, applied by
Store.apply() (one function, one dispatch). A request carries every decision the apply
needs (lease ids, which lease expired, the compaction target), so applying the same
requests in the same order gives every store the same revisions and the same data:
what a replicated log in front of apply() needs."""

from __future__ import annotations

from typing import NamedTuple, Optional

__all__ = ["PutRequest", "DeleteRangeRequest", "TxnRequest", "LeaseGrantRequest",
           "LeaseRevokeRequest", "CompactRequest", "CompactStepRequest",
           "SaveRevisionRequest", "WRITE_REQUESTS"]


class PutRequest(NamedTuple):
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False


class DeleteRangeRequest(NamedTuple):
    key: bytes
    range_end: Optional[bytes] = None     # None: the single key; b"\0": every key >= key
    prev_kv: bool = False


class TxnRequest(NamedTuple):
    compare: list
    success: list
    failure: list


class LeaseGrantRequest(NamedTuple):
    lease_id: int                         # chosen by the caller (never 0)
    ttl: int                              # granted TTL in seconds


class LeaseRevokeRequest(NamedTuple):
    lease_id: int                         # revoked, or found expired by the caller


class CompactRequest(NamedTuple):
    revision: int                         # reads below it fail from now on


class CompactStepRequest(NamedTuple):
    target: int
    upto: bytes                           # revision-log key to stop before
    final: bool = False


class SaveRevisionRequest(NamedTuple):
    pass


WRITE_REQUESTS = (PutRequest, DeleteRangeRequest, TxnRequest, LeaseGrantRequest,
                  LeaseRevokeRequest, CompactRequest, CompactStepRequest,
                  SaveRevisionRequest)
