"""etcd's gRPC errors: status codes and messages exactly as etcd 3.4 sends them
(etcdserver/api/v3rpc/rpctypes), and the one place that maps kvtrees exceptions to them.

Clients (etcdctl, clientv3, python-etcd3) match on the code and the message text to
decide what to raise, whether to retry and what to print, so both must be etcd's.
"""
from __future__ import annotations

from typing import NoReturn

import grpc

from .. import errors as kerr

C = grpc.StatusCode


class RpcError(Exception):
    """An etcd error to send as the RPC's status."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _e(code: grpc.StatusCode, message: str) -> RpcError:
    return RpcError(code, message)


EMPTY_KEY = _e(C.INVALID_ARGUMENT, "etcdserver: key is not provided")
KEY_NOT_FOUND = _e(C.INVALID_ARGUMENT, "etcdserver: key not found")
VALUE_PROVIDED = _e(C.INVALID_ARGUMENT, "etcdserver: value is provided")
LEASE_PROVIDED = _e(C.INVALID_ARGUMENT, "etcdserver: lease is provided")
TOO_MANY_OPS = _e(C.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
DUPLICATE_KEY = _e(C.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
COMPACTED = _e(C.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
FUTURE_REV = _e(C.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
NO_SPACE = _e(C.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
LEASE_NOT_FOUND = _e(C.NOT_FOUND, "etcdserver: requested lease not found")
LEASE_EXIST = _e(C.FAILED_PRECONDITION, "etcdserver: lease already exists")
LEASE_TTL_TOO_LARGE = _e(C.OUT_OF_RANGE, "etcdserver: too large lease TTL")
MEMBER_NOT_FOUND = _e(C.NOT_FOUND, "etcdserver: member not found")
REQUEST_TOO_LARGE = _e(C.INVALID_ARGUMENT, "etcdserver: request is too large")
TOO_MANY_REQUESTS = _e(C.RESOURCE_EXHAUSTED, "etcdserver: too many requests")
ROOT_USER_NOT_EXIST = _e(C.FAILED_PRECONDITION, "etcdserver: root user does not exist")
ROOT_ROLE_NOT_EXIST = _e(C.FAILED_PRECONDITION,
                         "etcdserver: root user does not have root role")
USER_ALREADY_EXIST = _e(C.FAILED_PRECONDITION, "etcdserver: user name already exists")
USER_EMPTY = _e(C.INVALID_ARGUMENT, "etcdserver: user name is empty")
USER_NOT_FOUND = _e(C.FAILED_PRECONDITION, "etcdserver: user name not found")
ROLE_ALREADY_EXIST = _e(C.FAILED_PRECONDITION, "etcdserver: role name already exists")
ROLE_NOT_FOUND = _e(C.FAILED_PRECONDITION, "etcdserver: role name not found")
ROLE_EMPTY = _e(C.INVALID_ARGUMENT, "etcdserver: role name is empty")
AUTH_FAILED = _e(C.INVALID_ARGUMENT,
                 "etcdserver: authentication failed, invalid user ID or password")
PERMISSION_DENIED = _e(C.PERMISSION_DENIED, "etcdserver: permission denied")
ROLE_NOT_GRANTED = _e(C.FAILED_PRECONDITION, "etcdserver: role is not granted to the user")
PERMISSION_NOT_GRANTED = _e(C.FAILED_PRECONDITION,
                            "etcdserver: permission is not granted to the role")
AUTH_NOT_ENABLED = _e(C.FAILED_PRECONDITION, "etcdserver: authentication is not enabled")
INVALID_AUTH_TOKEN = _e(C.UNAUTHENTICATED, "etcdserver: invalid auth token")
INVALID_AUTH_MGMT = _e(C.INVALID_ARGUMENT, "etcdserver: invalid auth management")
NOT_CAPABLE = _e(C.UNAVAILABLE, "etcdserver: not capable")
STOPPED = _e(C.UNAVAILABLE, "etcdserver: server stopped")
CORRUPT = _e(C.DATA_LOSS, "etcdserver: corrupt cluster")
BAD_LEADER_TRANSFEREE = _e(C.FAILED_PRECONDITION, "etcdserver: bad leader transferee")
NO_LEADER = _e(C.UNAVAILABLE, "etcdserver: no leader")
TIMEOUT = _e(C.UNAVAILABLE, "etcdserver: request timed out")
NOT_LEADER = _e(C.FAILED_PRECONDITION, "etcdserver: not leader")
TIMEOUT_LEADER_TRANSFER = _e(C.DEADLINE_EXCEEDED,
                             "etcdserver: request timed out, leader transfer took too long")
PEER_URL_EXIST = _e(C.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
MEMBER_NOT_LEARNER = _e(C.FAILED_PRECONDITION,
                        "etcdserver: can only promote a learner member")
LEARNER_NOT_READY = _e(C.FAILED_PRECONDITION, "etcdserver: can only promote a learner "
                                              "member which is in sync with leader")
# a replicated store's errors (kvtrees.cluster), by their message
_CLUSTER_ERRORS = {"no leader": NO_LEADER, "request timed out": TIMEOUT,
                   "not leader": NOT_LEADER, "bad leader transferee": BAD_LEADER_TRANSFEREE,
                   "request timed out, leader transfer took too long":
                       TIMEOUT_LEADER_TRANSFER,
                   "Peer URLs already exists": PEER_URL_EXIST,
                   "member not found": MEMBER_NOT_FOUND,
                   "can only promote a learner member": MEMBER_NOT_LEARNER,
                   "can only promote a learner member which is in sync with leader":
                       LEARNER_NOT_READY}
# the election recipe's errors are plain Go errors in etcd: code Unknown
ELECTION_NOT_LEADER = _e(C.UNKNOWN, "election: not leader")
ELECTION_NO_LEADER = _e(C.UNKNOWN, "election: no leader")

# ValueErrors the store raises for conditions etcd has a specific error for, matched on
# the start of their message (kvtrees/txn.py, kvtrees/lease.py)
_VALUE_ERRORS = (("too many operations in txn request", TOO_MANY_OPS),
                 ("duplicate key given in txn request", DUPLICATE_KEY),
                 ("too large lease TTL", LEASE_TTL_TOO_LARGE),
                 ("key must not be empty", EMPTY_KEY))


def from_exception(exc: BaseException) -> RpcError:
    """The etcd error for an exception raised by the store (or the server itself)."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, kerr.ClusterError):
        return _CLUSTER_ERRORS.get(str(exc)) or _e(C.UNAVAILABLE, "etcdserver: %s" % exc)
    if isinstance(exc, kerr.CompactedError):
        return COMPACTED
    if isinstance(exc, kerr.FutureRevisionError):
        return FUTURE_REV
    if isinstance(exc, kerr.LeaseNotFoundError):
        return LEASE_NOT_FOUND
    if isinstance(exc, kerr.KeyNotFoundError):
        return KEY_NOT_FOUND
    if isinstance(exc, kerr.TooLargeError):
        return REQUEST_TOO_LARGE
    if isinstance(exc, kerr.NoSpaceError):
        return NO_SPACE
    if isinstance(exc, kerr.ClosedError):
        return STOPPED
    if isinstance(exc, kerr.CorruptionError):
        return CORRUPT
    if isinstance(exc, (ValueError, TypeError)):
        msg = str(exc)
        for prefix, err in _VALUE_ERRORS:
            if msg.startswith(prefix):
                return err
        if msg.startswith("lease ") and msg.endswith("already exists"):
            return LEASE_EXIST
        return _e(C.INVALID_ARGUMENT, "etcdserver: " + msg)
    return _e(C.UNKNOWN, "kvtrees: %s: %s" % (type(exc).__name__, exc))


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """End the RPC with the etcd status for exc (context.abort raises)."""
    err = from_exception(exc)
    context.abort(err.code, err.message)
    raise AssertionError("unreachable")  # pragma: no cover
