"""etcd's v3lock service (Lock, Unlock) with the caller's lease."""
from __future__ import annotations

from ..mvcc import prefix_end
from . import recipes, rpcerrors
from .member import Member, handler
from .proto import v3lock_pb2, v3lock_pb2_grpc


class LockService(v3lock_pb2_grpc.LockServicer):
    def __init__(self, member: Member):
        self.member = member
        self.store = member.store

    @handler
    def Lock(self, req, context):
        """Blocks until the lock is held (or the RPC ends, which gives up the place in
        the queue). O(waiters ahead) reads and watches."""
        name = req.name
        if not name:
            raise rpcerrors.EMPTY_KEY
        self._check(context, name)
        self.member.check_writable()
        with self.member.stream_slot():
            key, rev, _ = recipes.own_key(self.store, name, req.lease, b"")
            try:
                recipes.wait_turn(self.store, name, rev, context)
                if not recipes.still_owner(self.store, key, rev):
                    raise recipes.SESSION_EXPIRED
            except BaseException:
                self.store.delete(key)
                raise
        return v3lock_pb2.LockResponse(header=self.member.header(), key=key)

    @handler
    def Unlock(self, req, context):
        self.member.auth.check_range(context, req.key, None, "write")
        res = self.store.delete(req.key, return_response=True)
        return v3lock_pb2.UnlockResponse(header=self.member.header(res.revision))

    def _check(self, context, name: bytes) -> None:
        prefix = name + b"/"
        self.member.auth.check_range(context, prefix, prefix_end(prefix), "write")
        self.member.auth.check_range(context, prefix, prefix_end(prefix), "read")
