"""etcd's KV service (Range, Put, DeleteRange, Txn, Compact) over the store's public API."""
from __future__ import annotations

from . import convert, rpcerrors
from .member import Member, handler
from .proto import rpc_pb2, rpc_pb2_grpc
from .txn import put_op, run_txn


def _key(raw: bytes) -> bytes:
    if not raw:
        raise rpcerrors.EMPTY_KEY
    return raw


def _rev(raw: int):
    return raw if raw > 0 else None     # etcd: revision <= 0 means the newest


class KVService(rpc_pb2_grpc.KVServicer):
    def __init__(self, member: Member):
        self.member = member
        self.store = member.store

    @handler
    def Range(self, req, context):
        """O(keys in range) (O(log n) for one key)."""
        key = _key(req.key)
        end = convert.range_end(req.range_end)
        self.member.auth.check_range(context, key, end, "read")
        if end is None and convert.is_plain_get(req):
            return self._get(key, req.serializable)
        order, target = convert.sort_args(req)
        res = self.store.range(key, end, revision=_rev(req.revision),
                               limit=max(0, req.limit), count_only=req.count_only,
                               keys_only=req.keys_only, sort_order=order,
                               sort_target=target, serializable=req.serializable,
                               **convert.revision_filters(req))
        return rpc_pb2.RangeResponse(header=self.member.header(res.revision),
                                     kvs=convert.kvs(res.kvs), more=res.more,
                                     count=res.count)

    def _get(self, key: bytes, serializable: bool):
        """One key at the current revision, no options (most Range requests): one
        native read at the revision the header names. A linearizable read first passes
        the store's read barrier (a replicated store waits for ReadIndex there), then
        takes the revision. O(log n)."""
        store = self.store
        if not serializable:
            store.read_barrier()
        rev = store.revision
        _, kv = store.get(key, rev, serializable=True)
        out = rpc_pb2.RangeResponse(header=self.member.header(rev))
        if kv is not None:
            out.kvs.append(convert.kv(kv))
            out.count = 1
        return out

    @handler
    def Put(self, req, context):
        """O(log n)."""
        key = _key(req.key)
        self.member.limits.check_size(req)
        self.member.auth.check_range(context, key, None, "write")
        if req.prev_kv:
            self.member.auth.check_range(context, key, None, "read")
        self.member.check_writable()
        if req.ignore_value or req.ignore_lease:
            return self._put_keeping(req)
        res = self.store.put(key, req.value, lease=req.lease or None, prev_kv=req.prev_kv)
        out = rpc_pb2.PutResponse(header=self.member.header(res.revision))
        if res.prev_kv is not None:
            out.prev_kv.CopyFrom(convert.kv(res.prev_kv))
        return out

    def _put_keeping(self, req):
        """ignore_value / ignore_lease: keep the key's current value or lease, decided
        inside the store's txn (atomic with the write)."""
        _, (res,) = self.store.transaction([], [put_op(self.store.transactions, req)], [])
        out = rpc_pb2.PutResponse(header=self.member.header(res.revision))
        if res.prev_kv is not None:
            out.prev_kv.CopyFrom(convert.kv(res.prev_kv))
        return out

    @handler
    def DeleteRange(self, req, context):
        """O(keys deleted + log n)."""
        key = _key(req.key)
        end = convert.range_end(req.range_end)
        self.member.auth.check_range(context, key, end, "write")
        if req.prev_kv:
            self.member.auth.check_range(context, key, end, "read")
        if end is None:
            res = self.store.delete(key, prev_kv=req.prev_kv, return_response=True)
        else:
            res = self.store.delete_range(key, end, prev_kv=req.prev_kv)
        return rpc_pb2.DeleteRangeResponse(header=self.member.header(res.revision),
                                           deleted=res.deleted,
                                           prev_kvs=convert.kvs(res.prev_kvs))

    @handler
    def Txn(self, req, context):
        """O(total size of the compares and of the taken branch's operations)."""
        self.member.limits.check_size(req)
        self.member.limits.check_txn_ops(req)
        return run_txn(self.member, req, context)

    @handler
    def Compact(self, req, context):
        """Marks the revision at once; with physical=true returns once the old versions
        are gone. O(revisions compacted) with physical."""
        self.member.auth.check_admin(context)
        self.store.compact(req.revision, physical=req.physical)
        return rpc_pb2.CompactionResponse(header=self.member.header())
