"""etcd's Lease service: Grant, Revoke, the KeepAlive stream, TimeToLive, Leases."""
from __future__ import annotations

from .. import errors as kerr
from ..lease import MAX_TTL
from . import rpcerrors
from .member import Member, handler
from .proto import rpc_pb2, rpc_pb2_grpc


class LeaseService(rpc_pb2_grpc.LeaseServicer):
    def __init__(self, member: Member):
        self.member = member
        self.store = member.store

    @handler
    def LeaseGrant(self, req, context):
        """O(1)."""
        self.member.auth.check_authenticated(context)
        self.member.check_writable()
        if req.TTL > MAX_TTL:
            raise rpcerrors.LEASE_TTL_TOO_LARGE
        if req.ID < 0:
            raise rpcerrors.RpcError(rpcerrors.C.INVALID_ARGUMENT,
                                     "etcdserver: lease ID must be positive")
        # etcd grants a TTL <= 0 as its minimum TTL; so does the store for 1, so ask for 1
        lease = self.store.lease(max(1, req.TTL), lease_id=req.ID or None)
        return rpc_pb2.LeaseGrantResponse(header=self.member.header(), ID=lease.id,
                                          TTL=lease.granted_ttl)

    @handler
    def LeaseRevoke(self, req, context):
        """Deletes the lease's keys in one revision. O(keys attached)."""
        if self.member.auth.enabled:
            for key in self.store.lease_keys(req.ID):
                self.member.auth.check_range(context, key, None, "write")
        self.store.revoke_lease(req.ID)
        return rpc_pb2.LeaseRevokeResponse(header=self.member.header())

    def LeaseKeepAlive(self, request_iterator, context):
        """One response per request; an unknown lease answers TTL 0 (as etcd, which
        clients turn into "requested lease not found")."""
        try:
            self.member.check_running()
            self.member.auth.check_authenticated(context)
            with self.member.stream_slot():
                yield from self._keep_alive(request_iterator)
        except Exception as exc:
            err = rpcerrors.from_exception(exc)
            context.abort(err.code, err.message)

    def _keep_alive(self, request_iterator):
        for req in request_iterator:
            if self.member.stopping.is_set():
                break
            try:
                ttl = self.store.refresh_lease(req.ID)
            except kerr.LeaseNotFoundError:
                ttl = 0
            yield rpc_pb2.LeaseKeepAliveResponse(header=self.member.header(),
                                                 ID=req.ID, TTL=ttl)

    @handler
    def LeaseTimeToLive(self, req, context):
        """O(1), plus O(keys attached) with keys=true. An unknown or expired lease
        answers TTL -1 (as etcd)."""
        self.member.auth.check_authenticated(context)
        granted = self.store.lease_granted_ttl(req.ID)
        remaining = self.store.lease_remaining_ttl(req.ID)
        if not granted or remaining < 0:
            return rpc_pb2.LeaseTimeToLiveResponse(header=self.member.header(), ID=req.ID,
                                                   TTL=-1)
        keys = self.store.lease_keys(req.ID) if req.keys else []
        return rpc_pb2.LeaseTimeToLiveResponse(header=self.member.header(), ID=req.ID,
                                               TTL=remaining, grantedTTL=granted, keys=keys)

    @handler
    def LeaseLeases(self, req, context):
        self.member.auth.check_authenticated(context)
        leases = [rpc_pb2.LeaseStatus(ID=lease.id) for lease in self.store.leases()]
        return rpc_pb2.LeaseLeasesResponse(header=self.member.header(), leases=leases)

