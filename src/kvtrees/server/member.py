"""The state every service shares: the store, the member's identity, limits, alarms and
the auth store; plus the decorator that turns exceptions into etcd's gRPC errors.
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import Callable, Optional

import grpc

from .. import errors as kerr
from . import convert, rpcerrors
from .identity import Identity
from .limits import Limits
from .proto import rpc_pb2

_log = logging.getLogger("kvtrees.server")

NOSPACE = rpc_pb2.NOSPACE
CORRUPT = rpc_pb2.CORRUPT


class Member:
    """One kvtrees server's shared state. Thread-safe."""

    def __init__(self, store, ident: Identity, limits: Limits, auth):
        self.store = store
        self.ident = ident
        self.limits = limits
        self.auth = auth
        self.stopping = threading.Event()
        self._alarms: set = set()            # alarm types raised on this member
        self._alarm_lock = threading.Lock()

    # ---- headers
    def header(self, revision: Optional[int] = None) -> rpc_pb2.ResponseHeader:
        """A response header at revision (default: the store's current revision)."""
        if revision is None:
            revision = self.store.revision
        return convert.header(self.ident, revision)

    # ---- alarms (etcd's NOSPACE: raised when the quota is hit, writes refused until
    # an operator disarms it, even if compaction freed space meanwhile)
    def alarms(self) -> list:
        with self._alarm_lock:
            return sorted(self._alarms)

    def raise_alarm(self, alarm: int) -> bool:
        with self._alarm_lock:
            new = alarm not in self._alarms
            self._alarms.add(alarm)
        if new:
            _log.warning("alarm raised: %s", rpc_pb2.AlarmType.Name(alarm))
        return new

    def disarm(self, alarm: int) -> bool:
        with self._alarm_lock:
            had = alarm in self._alarms
            self._alarms.discard(alarm)
            return had

    def check_writable(self) -> None:
        """Writes that grow the store are refused while an alarm is raised."""
        with self._alarm_lock:
            if NOSPACE in self._alarms:
                raise rpcerrors.NO_SPACE
            if CORRUPT in self._alarms:
                raise rpcerrors.CORRUPT

    def check_running(self) -> None:
        if self.stopping.is_set():
            raise rpcerrors.STOPPED

    def note_error(self, exc: BaseException) -> None:
        if isinstance(exc, kerr.NoSpaceError):
            self.raise_alarm(NOSPACE)
        elif isinstance(exc, kerr.CorruptionError):
            self.raise_alarm(CORRUPT)


def handler(fn: Callable) -> Callable:
    """Wrap a unary service method: every exception becomes etcd's status for it."""
    @functools.wraps(fn)
    def run(self, request, context):
        try:
            self.member.check_running()
            return fn(self, request, context)
        except Exception as exc:   # converted, never leaked as a Python traceback
            _fail(self.member, context, exc)
    return run


def stream_handler(fn: Callable) -> Callable:
    """As handler(), for methods that return a response iterator."""
    @functools.wraps(fn)
    def run(self, request, context):
        try:
            self.member.check_running()
            yield from fn(self, request, context)
        except Exception as exc:
            _fail(self.member, context, exc)
    return run


def _fail(member: Member, context: grpc.ServicerContext, exc: BaseException):
    member.note_error(exc)
    err = rpcerrors.from_exception(exc)
    if err.code == grpc.StatusCode.UNKNOWN and not isinstance(exc, rpcerrors.RpcError):
        _log.exception("unexpected error in RPC")
    context.abort(err.code, err.message)
