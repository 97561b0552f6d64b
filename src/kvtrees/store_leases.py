"""The store's leases: grant, refresh, revoke (with the keys attached) and expiry
(part of Store)."""

from __future__ import annotations

from typing import Optional

from . import mvcc
from .errors import CorruptionError, LeaseNotFoundError
from .lease import Lease
from .requests import LeaseGrantRequest, LeaseRevokeRequest
from .txn import to_lease_id
from .write_set import WriteSet


class StoreLeases:
    """Store's lease methods; the timing of leases is LeaseTable's (lease.py)."""

    def _load_leases(self) -> None:
        for ek, ev in self._eng.items(mvcc.LEASE, mvcc.LEASE + b"\xff" * 9):
            if len(ek) != 9 or len(ev) != 8:
                raise CorruptionError("malformed lease record %r" % (ek,))
            lid = int.from_bytes(ek[1:], "big")
            self._leases.add(lid, int.from_bytes(ev, "big"))
            self._core.lease_add(lid)

    def lease(self, ttl: int, lease_id: Optional[int] = None) -> Lease:
        """Grant a lease of at least ttl seconds (etcd's minimum: 2)."""
        granted = self._leases.effective_ttl(ttl)
        if lease_id is not None:
            lease_id = to_lease_id(lease_id)
        with self._writing():           # the id is chosen here, outside apply()
            self._check_open()
            return self.apply(LeaseGrantRequest(lease_id or self._leases.new_id(), granted))

    def _apply_lease_grant(self, req: LeaseGrantRequest) -> Lease:
        lease_id, granted = req
        with self._writing():
            self._check_open()
            self._check_quota()
            if lease_id in self._leases:
                raise ValueError("lease %#x already exists" % lease_id)
            with self._eng.batch() as b:
                b.put(mvcc.LEASE + mvcc.be64(lease_id), mvcc.be64(granted))
                self._stamp_batch(b)
            self._leases.add(lease_id, granted)
            self._core.lease_add(lease_id)
        return Lease(self, lease_id, granted)

    def get_lease(self, lease_id) -> Lease:
        lid = to_lease_id(lease_id)
        self._check_open()
        if lid not in self._leases:
            raise LeaseNotFoundError("requested lease %#x not found" % lid)
        return Lease(self, lid, self._leases.granted_ttl(lid))

    def leases(self) -> list:
        self._check_open()
        return [Lease(self, lid, self._leases.granted_ttl(lid)) for lid in self._leases.ids()]

    def refresh_lease(self, lease_id) -> int:
        lid = to_lease_id(lease_id)
        self._check_open()
        try:
            return self._leases.refresh(lid)
        except KeyError:
            raise LeaseNotFoundError("requested lease %#x not found" % lid) from None

    def revoke_lease(self, lease_id) -> bool:
        """Revoke: delete the lease and (in one revision) every key attached to it."""
        return self.apply(LeaseRevokeRequest(to_lease_id(lease_id)))

    def _apply_lease_revoke(self, req: LeaseRevokeRequest) -> bool:
        lid = req.lease_id
        with self._writing():
            self._check_open()
            if lid not in self._leases:
                raise LeaseNotFoundError("requested lease %#x not found" % lid)
            self._revoke(lid)
        return True

    def _revoke(self, lid: int) -> None:
        w = WriteSet(self)
        extra: dict = {mvcc.LEASE + mvcc.be64(lid): None}
        pfx = mvcc.ATTACH + mvcc.be64(lid)
        for ak, _ in list(self._eng.items(pfx, mvcc.ATTACH + mvcc.be64(lid + 1))):
            key = bytes(ak[9:])
            e = w.current(key)
            if e is not None and e.lease == lid:
                w.delete(key)
            extra[bytes(ak)] = None
        self._commit(w, extra)
        self._leases.remove(lid)
        self._core.lease_remove(lid)

    def _expire_lease(self, lid: int) -> None:
        """The lease thread's decision (its clock, here, outside apply): still expired
        under the writer lock, so a refresh that just happened is not undone."""
        with self._writing():
            if self._closed or lid not in self._leases or not self._leases.expired(lid):
                return
            self.apply(LeaseRevokeRequest(lid))

    def lease_granted_ttl(self, lease_id) -> int:
        """Granted TTL of a lease, 0 once expired or revoked. O(1)."""
        self._check_open()
        return self._leases.granted_ttl(to_lease_id(lease_id))

    def lease_remaining_ttl(self, lease_id) -> int:
        """Whole seconds left (rounded down, as etcd), -1 once expired or revoked. O(1)."""
        self._check_open()
        return self._leases.remaining(to_lease_id(lease_id))

    def lease_keys(self, lease_id) -> list:
        """Keys attached to a lease, in key order. O(keys attached)."""
        lid = to_lease_id(lease_id)
        self._check_open()
        pfx = mvcc.ATTACH + mvcc.be64(lid)
        return [bytes(ak[9:]) for ak, _ in self._eng.items(pfx, mvcc.ATTACH + mvcc.be64(lid + 1))]
