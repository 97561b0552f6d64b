"""etcd's v3election service: Campaign, Proclaim, Leader, Observe, Resign."""
from __future__ import annotations

from ..mvcc import prefix_end
from ..watch import DeleteEvent
from . import convert, recipes, rpcerrors
from .member import Member, handler, stream_handler
from .proto import v3election_pb2, v3election_pb2_grpc


class ElectionService(v3election_pb2_grpc.ElectionServicer):
    def __init__(self, member: Member):
        self.member = member
        self.store = member.store

    def _check(self, context, name: bytes, kind: str) -> None:
        if not name:
            raise rpcerrors.EMPTY_KEY
        prefix = name + b"/"
        self.member.auth.check_range(context, prefix, prefix_end(prefix), kind)

    @handler
    def Campaign(self, req, context):
        """Blocks until elected; the value is proclaimed at once (as etcd, a rerun
        campaign with another value proclaims the new one)."""
        self._check(context, req.name, "write")
        self.member.check_writable()
        with self.member.stream_slot():
            key, rev, cur = recipes.own_key(self.store, req.name, req.lease, req.value)
            if cur != req.value:
                self._proclaim(key, rev, req.lease, req.value)
            try:
                recipes.wait_turn(self.store, req.name, rev, context)
                if not recipes.still_owner(self.store, key, rev):
                    raise recipes.SESSION_EXPIRED
            except BaseException:
                self.store.delete(key)
                raise
        leader = v3election_pb2.LeaderKey(name=req.name, key=key, rev=rev, lease=req.lease)
        return v3election_pb2.CampaignResponse(header=self.member.header(), leader=leader)

    def _proclaim(self, key: bytes, rev: int, lease: int, value: bytes) -> int:
        t = self.store.transactions
        ok, resp = self.store.transaction([t.create(key) == rev],
                                          [t.put(key, value, lease=lease or None)], [])
        if not ok:
            raise rpcerrors.ELECTION_NOT_LEADER
        return resp[0].revision

    @handler
    def Proclaim(self, req, context):
        self._check(context, req.leader.name, "write")
        self.member.check_writable()
        lk = req.leader
        rev = self._proclaim(lk.key, lk.rev, lk.lease, req.value)
        return v3election_pb2.ProclaimResponse(header=self.member.header(rev))

    @handler
    def Leader(self, req, context):
        self._check(context, req.name, "read")
        kv, rev = recipes.first_in_line(self.store, req.name)
        if kv is None:
            raise rpcerrors.ELECTION_NO_LEADER
        return v3election_pb2.LeaderResponse(header=self.member.header(rev),
                                             kv=convert.kv(kv))

    @stream_handler
    def Observe(self, req, context):
        """Every leader proclamation in order: the current leader's value, its later
        proclamations, then the next leader's, until the client ends the stream."""
        self._check(context, req.name, "read")
        with self.member.stream_slot():
            yield from self._observe(req, context)

    def _observe(self, req, context):
        prefix = req.name + b"/"
        end = prefix_end(prefix)
        while context.is_active():
            kv, rev = recipes.first_in_line(self.store, req.name)
            if kv is None:
                recipes.next_change(self.store, prefix, end, rev + 1, context, False)
                continue
            yield v3election_pb2.LeaderResponse(header=self.member.header(rev),
                                                kv=convert.kv(kv))
            yield from self._follow(kv, rev, context)

    def _follow(self, kv, rev: int, context):
        """Proclamations of the leader key kv until it is deleted."""
        while True:
            ev = recipes.next_change(self.store, kv.key, None, rev + 1, context, True)
            if isinstance(ev, DeleteEvent):
                return
            if ev.create_revision != kv.create_revision:
                return
            rev = ev.mod_revision
            yield v3election_pb2.LeaderResponse(header=self.member.header(rev),
                                                kv=convert.kv(ev.kv))

    @handler
    def Resign(self, req, context):
        lk = req.leader
        self._check(context, lk.name, "write")
        t = self.store.transactions
        _, resp = self.store.transaction([t.create(lk.key) == lk.rev], [t.delete(lk.key)], [])
        return v3election_pb2.ResignResponse(header=self.member.header())
