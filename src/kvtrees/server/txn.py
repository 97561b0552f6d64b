"""etcd's Txn: protobuf TxnRequest -> store transaction -> TxnResponse.

Everything a txn decides is decided inside the store's txn, under its writer lock: a
compare with range_end (every key in [key, range_end) must satisfy it, as etcd 3.3+)
and a put with ignore_value / ignore_lease are passed to the store as such.
"""
from __future__ import annotations

from . import convert, rpcerrors
from .member import Member
from .proto import rpc_pb2


def run_txn(member: Member, req, context) -> rpc_pb2.TxnResponse:
    """A TxnRequest through the store's transaction: auth, quota, then one atomic store
    txn (one native call for the one-key shape). O(size of the compares and of the
    taken branch)."""
    store = member.store
    writes = _check_auth(member, req, context)
    if writes:
        member.check_writable()
    compare = _compares(store, req.compare)
    before = store.revision
    ok, responses = store.transaction(compare, _ops(store, req.success),
                                      _ops(store, req.failure))
    taken = req.success if ok else req.failure
    # a read-only txn: the revision read before it, raised to the newest version it
    # read (a write between the two is then covered: a watch from the header's
    # revision + 1 on the keys read neither misses nor repeats an event)
    rev = _revision(responses) or max(before, _newest_read(responses))
    out = rpc_pb2.TxnResponse(header=member.header(rev), succeeded=ok)
    out.responses.extend(_responses(member, taken, responses, rev))
    return out


def _check_auth(member: Member, req, context) -> bool:
    """Permission for every compare (read) and op; True if any op may write."""
    auth = member.auth
    if not auth.enabled:
        return _has_puts(req)
    writes = False
    for c in req.compare:
        auth.check_range(context, c.key, convert.range_end(c.range_end), "read")
    for op in list(req.success) + list(req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            r = op.request_range
            auth.check_range(context, r.key, convert.range_end(r.range_end), "read")
        elif kind == "request_put":
            auth.check_range(context, op.request_put.key, None, "write")
            writes = True
        elif kind == "request_delete_range":
            d = op.request_delete_range
            auth.check_range(context, d.key, convert.range_end(d.range_end), "write")
        elif kind == "request_txn":
            writes = _check_auth(member, op.request_txn, context) or writes
    return writes


def _has_puts(req) -> bool:
    """Whether either branch (nested txns included) has a put: what the quota guards.
    O(ops)."""
    for branch in (req.success, req.failure):
        for op in branch:
            if op.HasField("request_put") or (op.HasField("request_txn")
                                              and _has_puts(op.request_txn)):
                return True
    return False


def _compares(store, compares) -> list:
    return [_compare(store, c) for c in compares]


def _compare(store, c):
    if not c.key:
        raise rpcerrors.EMPTY_KEY
    target, field = convert.CMP_TARGETS[c.target]
    op = convert.CMP_OPS.get(c.result)
    if op is None:
        raise rpcerrors.RpcError(rpcerrors.C.INVALID_ARGUMENT,
                                 "etcdserver: unknown compare result")
    cmp = getattr(store.transactions, target)(c.key, c.range_end or None)
    operand = getattr(c, field)
    return {"==": cmp.__eq__, "!=": cmp.__ne__, "<": cmp.__lt__, ">": cmp.__gt__}[op](operand)


def _ops(store, ops) -> list:
    t = store.transactions
    out = []
    for op in ops:
        kind = op.WhichOneof("request")
        if kind == "request_range":
            r = op.request_range
            if not r.key:
                raise rpcerrors.EMPTY_KEY
            # only the options set: a plain one-key get keeps the txn on the store's
            # native path
            kw = convert.revision_filters(r)
            if r.keys_only:
                kw["keys_only"] = True
            if r.sort_order or r.sort_target:
                kw["sort_order"], kw["sort_target"] = convert.sort_args(r)
            if r.limit > 0:
                kw["limit"] = r.limit
            if r.revision > 0:
                kw["revision"] = r.revision
            out.append(t.get(r.key, convert.range_end(r.range_end), **kw))
        elif kind == "request_put":
            p = op.request_put
            if not p.key:
                raise rpcerrors.EMPTY_KEY
            out.append(put_op(t, p))
        elif kind == "request_delete_range":
            d = op.request_delete_range
            if not d.key:
                raise rpcerrors.EMPTY_KEY
            out.append(t.delete(d.key, convert.range_end(d.range_end), prev_kv=d.prev_kv))
        elif kind == "request_txn":
            n = op.request_txn
            out.append(t.txn(_compares(store, n.compare), _ops(store, n.success),
                             _ops(store, n.failure)))
        else:
            raise rpcerrors.RpcError(rpcerrors.C.INVALID_ARGUMENT,
                                     "etcdserver: empty request in txn")
    return out


def put_op(t, p):
    """A PutRequest as a store txn put (etcd's checkPutRequest first)."""
    if p.ignore_value and p.value:
        raise rpcerrors.VALUE_PROVIDED
    if p.ignore_lease and p.lease:
        raise rpcerrors.LEASE_PROVIDED
    return t.put(p.key, p.value, lease=p.lease or None, prev_kv=p.prev_kv,
                 ignore_value=p.ignore_value, ignore_lease=p.ignore_lease)


def _revision(responses) -> int:
    """The txn's revision, from any write response in it (0: it wrote nothing)."""
    for r in responses:
        rev = getattr(r, "revision", None)
        if isinstance(rev, int) and rev:
            return rev
        if isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], bool):
            rev = _revision(r[1])
            if rev:
                return rev
    return 0


def _newest_read(responses) -> int:
    """The highest mod_revision among the KeyValues the txn's ranges returned."""
    rev = 0
    for r in responses:
        if type(r) is list:
            for _, kv in r:
                rev = max(rev, kv.mod_revision)
        elif isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], bool):
            rev = max(rev, _newest_read(r[1]))
    return rev


def _responses(member: Member, taken, responses, rev: int) -> list:
    out = []
    for op, res in zip(taken, responses):
        kind = op.WhichOneof("request")
        h = rpc_pb2.ResponseHeader(revision=rev)   # etcd: inner headers carry the revision only
        if kind == "request_range":
            kvs = [kv for _, kv in res]
            r = op.request_range
            rr = rpc_pb2.RangeResponse(header=h, count=len(kvs))
            if not r.count_only:
                rr.kvs.extend(convert.kvs(kvs))
            out.append(rpc_pb2.ResponseOp(response_range=rr))
        elif kind == "request_put":
            pr = rpc_pb2.PutResponse(header=h)
            if res.prev_kv is not None:
                pr.prev_kv.CopyFrom(convert.kv(res.prev_kv))
            out.append(rpc_pb2.ResponseOp(response_put=pr))
        elif kind == "request_delete_range":
            out.append(rpc_pb2.ResponseOp(response_delete_range=rpc_pb2.DeleteRangeResponse(
                header=h, deleted=res.deleted, prev_kvs=convert.kvs(res.prev_kvs))))
        else:
            ok, inner = res
            # etcd: a nested txn's header is present but empty (its ops carry revisions)
            tr = rpc_pb2.TxnResponse(header=rpc_pb2.ResponseHeader(), succeeded=ok)
            tr.responses.extend(_responses(member, (op.request_txn.success if ok
                                                    else op.request_txn.failure),
                                           inner, rev))
            out.append(rpc_pb2.ResponseOp(response_txn=tr))
    return out

