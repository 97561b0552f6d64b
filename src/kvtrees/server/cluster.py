"""etcd's Cluster service. A single-member server answers MemberList with itself and
refuses membership changes; a Raft member (kvtrees serve --initial-cluster ...) lists
the replicated member table and changes it through Raft (kvtrees.cluster.serving)."""
from __future__ import annotations

from . import rpcerrors
from .member import Member, handler
from .proto import rpc_pb2, rpc_pb2_grpc

NO_MEMBERSHIP_CHANGES = rpcerrors.RpcError(
    rpcerrors.C.UNIMPLEMENTED,
    "kvtrees: membership changes need a Raft cluster; this server is a single member")


def _pb(m: dict) -> rpc_pb2.Member:
    return rpc_pb2.Member(ID=m["id"], name=m["name"], peerURLs=m["peer_urls"],
                          clientURLs=m["client_urls"], isLearner=m["learner"])


class ClusterService(rpc_pb2_grpc.ClusterServicer):
    def __init__(self, member: Member):
        self.member = member
        self.cluster = getattr(member, "cluster", None)

    def _members(self) -> list:
        if self.cluster is not None:
            from ..cluster import serving
            return [_pb(m) for m in serving.members(self.cluster)]
        ident = self.member.ident
        return [rpc_pb2.Member(ID=ident.member_id, name=ident.name,
                               peerURLs=ident.peer_urls, clientURLs=ident.client_urls)]

    def _require_cluster(self, member_id: int) -> None:
        """A change naming member_id needs a Raft cluster: a single member answers as
        etcd would for an unknown id, else that it cannot change membership."""
        if self.cluster is None:
            if member_id != self.member.ident.member_id:
                raise rpcerrors.MEMBER_NOT_FOUND
            raise NO_MEMBERSHIP_CHANGES

    @handler
    def MemberList(self, req, context):
        self.member.auth.check_authenticated(context)
        # as etcd's cluster service: the header carries no revision
        return rpc_pb2.MemberListResponse(header=self.member.header(0),
                                          members=self._members())

    @handler
    def MemberAdd(self, req, context):
        if self.cluster is None:
            raise NO_MEMBERSHIP_CHANGES
        from ..cluster import serving
        self.member.auth.check_admin(context)
        added = serving.add(self.cluster, list(req.peerURLs), req.isLearner)
        return rpc_pb2.MemberAddResponse(header=self.member.header(0), member=_pb(added),
                                         members=self._members())

    @handler
    def MemberRemove(self, req, context):
        self._require_cluster(req.ID)
        from ..cluster import serving
        self.member.auth.check_admin(context)
        serving.remove(self.cluster, req.ID)
        return rpc_pb2.MemberRemoveResponse(header=self.member.header(0),
                                            members=self._members())

    @handler
    def MemberUpdate(self, req, context):
        if req.ID not in [m.ID for m in self._members()]:
            raise rpcerrors.MEMBER_NOT_FOUND
        raise NO_MEMBERSHIP_CHANGES

    @handler
    def MemberPromote(self, req, context):
        self._require_cluster(req.ID)
        from ..cluster import serving
        self.member.auth.check_admin(context)
        serving.promote(self.cluster, req.ID)
        return rpc_pb2.MemberPromoteResponse(header=self.member.header(0),
                                             members=self._members())
