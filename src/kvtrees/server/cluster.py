"""etcd's Cluster service for a one-member cluster: MemberList answers this member;
membership changes need a Raft cluster (docs/RAFT.md) and are refused here."""
from __future__ import annotations

from . import rpcerrors
from .member import Member, handler
from .proto import rpc_pb2, rpc_pb2_grpc

NO_MEMBERSHIP_CHANGES = rpcerrors.RpcError(
    rpcerrors.C.UNIMPLEMENTED,
    "kvtrees: membership changes need a Raft cluster; this server is a single member")


class ClusterService(rpc_pb2_grpc.ClusterServicer):
    def __init__(self, member: Member):
        self.member = member

    def _members(self) -> list:
        ident = self.member.ident
        return [rpc_pb2.Member(ID=ident.member_id, name=ident.name,
                               peerURLs=ident.peer_urls, clientURLs=ident.client_urls)]

    @handler
    def MemberList(self, req, context):
        self.member.auth.check_authenticated(context)
        # as etcd's cluster service: the header carries no revision
        return rpc_pb2.MemberListResponse(header=self.member.header(0),
                                          members=self._members())

    @handler
    def MemberAdd(self, req, context):
        raise NO_MEMBERSHIP_CHANGES

    @handler
    def MemberRemove(self, req, context):
        if req.ID != self.member.ident.member_id:
            raise rpcerrors.MEMBER_NOT_FOUND
        raise NO_MEMBERSHIP_CHANGES

    @handler
    def MemberUpdate(self, req, context):
        if req.ID != self.member.ident.member_id:
            raise rpcerrors.MEMBER_NOT_FOUND
        raise NO_MEMBERSHIP_CHANGES

    @handler
    def MemberPromote(self, req, context):
        if req.ID != self.member.ident.member_id:
            raise rpcerrors.MEMBER_NOT_FOUND
        raise NO_MEMBERSHIP_CHANGES
