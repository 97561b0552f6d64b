"""Store results -> etcd's protobuf messages (and etcd requests -> store arguments).

Pure functions, no I/O: each one is O(size of what it converts).
"""
from __future__ import annotations

from typing import Iterable, Optional

from ..mvcc import KeyValue
from ..watch import DeleteEvent
from .identity import Identity
from .proto import kv_pb2, rpc_pb2

Req = rpc_pb2.RangeRequest
SORT_ORDERS = {Req.NONE: None, Req.ASCEND: "ascend", Req.DESCEND: "descend"}
SORT_TARGETS = {Req.KEY: "key", Req.VERSION: "version", Req.CREATE: "create",
                Req.MOD: "mod", Req.VALUE: "value"}
CMP_TARGETS = {rpc_pb2.Compare.VERSION: ("version", "version"),
               rpc_pb2.Compare.CREATE: ("create", "create_revision"),
               rpc_pb2.Compare.MOD: ("mod", "mod_revision"),
               rpc_pb2.Compare.VALUE: ("value", "value"),
               rpc_pb2.Compare.LEASE: ("lease", "lease")}
CMP_OPS = {rpc_pb2.Compare.EQUAL: "==", rpc_pb2.Compare.GREATER: ">",
           rpc_pb2.Compare.LESS: "<", rpc_pb2.Compare.NOT_EQUAL: "!="}


def header(ident: Identity, revision: int) -> rpc_pb2.ResponseHeader:
    return rpc_pb2.ResponseHeader(cluster_id=ident.cluster_id, member_id=ident.member_id,
                                  revision=revision, raft_term=ident.raft_term)


def kv(k: KeyValue) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=k.key, value=k.value, create_revision=k.create_revision,
                           mod_revision=k.mod_revision, version=k.version, lease=k.lease)


def kvs(items: Iterable[KeyValue]) -> list:
    return [kv(k) for k in items]


def event(ev, with_prev: bool) -> kv_pb2.Event:
    """A store watch event as mvccpb.Event (a delete carries only key and mod_revision,
    as in etcd)."""
    is_delete = isinstance(ev, DeleteEvent)
    out = kv_pb2.Event(type=kv_pb2.Event.DELETE if is_delete else kv_pb2.Event.PUT)
    if is_delete:
        out.kv.key = ev.key
        out.kv.mod_revision = ev.mod_revision
    else:
        out.kv.CopyFrom(kv(ev.kv))
    if with_prev and ev.prev_kv is not None:
        out.prev_kv.CopyFrom(kv(ev.prev_kv))
    return out


def range_end(raw: bytes) -> Optional[bytes]:
    """etcd's range_end: empty means the single key; b"\\0" means every key >= key."""
    return raw if raw else None


def sort_args(req) -> tuple:
    """(sort_order, sort_target) for the store; as etcd, sorting on a field other than
    the key with no order given means ascending."""
    order = SORT_ORDERS.get(req.sort_order)
    target = SORT_TARGETS.get(req.sort_target, "key")
    if order is None and target != "key":
        order = "ascend"
    return order, target


def revision_filters(req) -> dict:
    """The min/max mod/create revision filters that are set (0 means unset in etcd)."""
    return {name: getattr(req, name) for name in
            ("min_mod_revision", "max_mod_revision", "min_create_revision",
             "max_create_revision") if getattr(req, name)}


def is_plain_get(req) -> bool:
    """A RangeRequest with no option set (revision, limit, sorting, filters, keys_only,
    count_only): the common read. O(1)."""
    return not (req.revision or req.limit or req.sort_order or req.sort_target
                or req.keys_only or req.count_only or req.min_mod_revision
                or req.max_mod_revision or req.min_create_revision
                or req.max_create_revision)
