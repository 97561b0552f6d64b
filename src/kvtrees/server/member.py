"""The state every service shares: the store, the member's identity, limits, alarms and
the auth store; plus the decorator that turns exceptions into etcd's gRPC errors.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
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
QUOTA_SAMPLE = 0.05      # seconds


class Member:
    """One kvtrees server's shared state. Thread-safe."""

    def __init__(self, store, ident: Identity, limits: Limits, auth, quota_bytes: int = 0):
        self.store = store
        self.quota = quota_bytes
        self._size, self._size_at = 0, float("-inf")
        self.ident = ident
        self.limits = limits
        self.auth = auth
        self.stopping = threading.Event()
        self._alarms: set = set()            # (member id, alarm type) raised
        self._alarm_lock = threading.Lock()
        self._streams = threading.BoundedSemaphore(limits.max_streams)

    # ---- headers
    def header(self, revision: Optional[int] = None) -> rpc_pb2.ResponseHeader:
        """A response header at revision (default: the store's current revision)."""
        if revision is None:
            revision = self.store.revision
        return convert.header(self.ident, revision)

    # ---- alarms, as etcd's alarm store: keyed by (member id, type) as requested
    # (python-etcd3 and etcdctl rely on member id 0 meaning "0", not "this member").
    # NOSPACE is raised when the quota is hit; while any NOSPACE alarm is raised writes
    # that grow the store are refused, even if compaction freed space, until disarmed.
    def alarms(self, alarm: int = rpc_pb2.NONE) -> list:
        """[(member_id, type)] raised, of one type (NONE: all)."""
        with self._alarm_lock:
            return sorted(a for a in self._alarms if alarm in (rpc_pb2.NONE, a[1]))

    def raise_alarm(self, alarm: int, member_id: Optional[int] = None) -> tuple:
        key = (self.ident.member_id if member_id is None else member_id, alarm)
        with self._alarm_lock:
            new = key not in self._alarms
            self._alarms.add(key)
        if new:
            _log.warning("alarm raised: memberID:%d alarm:%s", key[0],
                         rpc_pb2.AlarmType.Name(alarm))
        return key

    def disarm(self, member_id: int, alarm: int) -> bool:
        with self._alarm_lock:
            had = (member_id, alarm) in self._alarms
            self._alarms.discard((member_id, alarm))
            return had

    def check_writable(self) -> None:
        """Writes that grow the store are refused while an alarm is raised, and raise
        NOSPACE once the store is past --quota-backend-bytes. O(1) (per write: no
        alarm raised costs one test)."""
        if self._alarms:
            kinds = {a for _, a in self.alarms()}
            if NOSPACE in kinds:
                raise rpcerrors.NO_SPACE
            if CORRUPT in kinds:
                raise rpcerrors.CORRUPT
        if self.quota and self._store_size() >= self.quota:
            self.raise_alarm(NOSPACE)
            raise rpcerrors.NO_SPACE

    def _store_size(self) -> int:
        """The store's size, sampled at most every QUOTA_SAMPLE seconds: reading the
        engine's statistics costs about as much as a put, so doing it per write (as the
        store's own quota_bytes option does) halves the write rate. A burst may overshoot
        the quota by what it writes in QUOTA_SAMPLE."""
        now = time.monotonic()
        if now - self._size_at >= QUOTA_SAMPLE:
            self._size, self._size_at = self.store.status().db_size, now
        return self._size

    def stream_slot(self):
        """A context manager holding one of the max_streams slots for a long-lived RPC;
        raises etcd's "too many requests" (RESOURCE_EXHAUSTED) when none is free."""
        if not self._streams.acquire(blocking=False):
            raise rpcerrors.TOO_MANY_REQUESTS
        return _Slot(self._streams)

    def check_running(self) -> None:
        if self.stopping.is_set():
            raise rpcerrors.STOPPED

    def note_error(self, exc: BaseException) -> None:
        if isinstance(exc, kerr.NoSpaceError):
            self.raise_alarm(NOSPACE)
        elif isinstance(exc, kerr.CorruptionError):
            self.raise_alarm(CORRUPT)


class _Slot:
    def __init__(self, sem):
        self._sem = sem

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._sem.release()


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
