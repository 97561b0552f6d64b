"""The replicated store's own requests, beside the store's (kvtrees.requests): what a
cluster must agree on that a single store decides alone."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["LeaseRefreshRequest", "MemberAttrRequest"]


class LeaseRefreshRequest(NamedTuple):
    """A lease keep-alive: every member restarts the lease's countdown when it applies
    it, so the leader (which alone expires leases) sees refreshes sent to any member."""
    lease_id: int


class MemberAttrRequest(NamedTuple):
    """A member publishes its name and client URLs (etcd's member attributes), so that
    MemberList on every member shows them."""
    member_id: int
    name: str
    client_urls: tuple
