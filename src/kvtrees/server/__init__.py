"""`kvtrees serve`: etcd's v3 gRPC API over a kvtrees store (docs/SERVER.md).

Needs the `server` extra (grpcio, protobuf, bcrypt). One concept per module:
proto/ (the wire contract), convert (store results <-> messages), rpcerrors (etcd's
status codes and messages), limits, identity, auth, one module per service (kv, txn,
watch, lease, maintenance, cluster, auth_service, lock, election, recipes), compactor,
server (lifecycle) and cli (the `kvtrees serve` command).
"""
from .server import Server, serve

__all__ = ["Server", "serve"]
