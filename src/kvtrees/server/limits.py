"""Request and resource limits, with etcd's defaults and flag meanings."""
from __future__ import annotations

from dataclasses import dataclass

from . import rpcerrors

GRPC_OVERHEAD_BYTES = 512 * 1024   # etcd lets gRPC accept this much beyond the limit


@dataclass
class Limits:
    max_request_bytes: int = 1572864    # --max-request-bytes (etcd: 1.5 MiB)
    max_txn_ops: int = 128              # --max-txn-ops
    # every RPC in flight holds a worker thread (gRPC's sync server), so the pool is as
    # large as the cap on RPCs in flight (beyond it: RESOURCE_EXHAUSTED, never a queue),
    # and long-lived streams (watch, keep-alive, observe, a waiting lock or campaign)
    # get at most max_streams of them: unary calls always find a thread
    max_concurrent_rpcs: int = 512
    max_streams: int = 384
    max_watches_per_stream: int = 1000  # creates beyond this are refused on that stream
    watch_queue: int = 64               # responses queued per watch stream before its
    #                                     watches fall back to catching up from storage

    def grpc_max_receive(self) -> int:
        return self.max_request_bytes + GRPC_OVERHEAD_BYTES

    def check_size(self, request) -> None:
        """etcd's "request is too large": the encoded request over --max-request-bytes.
        O(size of the request) (protobuf caches the size)."""
        if request.ByteSize() > self.max_request_bytes:
            raise rpcerrors.REQUEST_TOO_LARGE

    def check_txn_ops(self, txn, budget: int = -1) -> None:
        """etcd's checkTxnRequest: the longest of compare/success/failure may not exceed
        --max-txn-ops; a nested txn gets what its parent left."""
        budget = self.max_txn_ops if budget < 0 else budget
        n = max(len(txn.compare), len(txn.success), len(txn.failure))
        if n > budget:
            raise rpcerrors.TOO_MANY_OPS
        for op in list(txn.success) + list(txn.failure):
            if op.WhichOneof("request") == "request_txn":
                self.check_txn_ops(op.request_txn, budget - n)
