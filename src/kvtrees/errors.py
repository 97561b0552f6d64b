"""kvtrees exceptions, and the one place that maps C return codes to them.

Every error raised by kvtrees derives from :class:`KvtreesError`. Errors that report
bad arguments also derive from :class:`ValueError` (oversized keys/values, invalid
options), and storage failures from :class:`OSError`.
"""

from __future__ import annotations

__all__ = [
    "KvtreesError", "CorruptionError", "LockedError", "ClosedError", "EngineMismatchError",
    "CompactedError", "FutureRevisionError", "LeaseNotFoundError", "KeyNotFoundError",
    "TooLargeError", "NoSpaceError", "ReadOnlyError", "StorageError", "FatalError",
    "InvalidArgumentError", "UnsupportedVersionError", "ClusterError", "NoLeaderError",
    "RequestTimeoutError", "error_from_code", "check",
]


class KvtreesError(Exception):
    """Base class of every kvtrees error."""


class StorageError(KvtreesError, OSError):
    """An I/O call failed (read, write, fsync, open)."""


class FatalError(StorageError):
    """The handle is unusable after an earlier I/O failure; close and reopen it
    (reopening recovers every committed write from the log)."""


class NoSpaceError(StorageError):
    """The disk is full."""


class CorruptionError(KvtreesError):
    """On-disk data failed a checksum or structural check; the message names file and page."""


class LockedError(KvtreesError):
    """The directory is locked by another writer (or, for a writer, by any handle)."""


class ClosedError(KvtreesError):
    """The engine, store, iterator or batch was used after close()."""


class EngineMismatchError(KvtreesError):
    """The directory was created by the other engine."""


class TooLargeError(KvtreesError, ValueError):
    """A key or value exceeds the size limit."""


class InvalidArgumentError(KvtreesError, ValueError):
    """An argument was rejected by the native layer."""


class ReadOnlyError(KvtreesError):
    """A write on a handle opened with read_only=True."""


class UnsupportedVersionError(KvtreesError):
    """The file format or ABI version is not supported by this build."""


class OutOfMemoryError(KvtreesError, MemoryError):
    """The native layer could not allocate memory."""


class CompactedError(KvtreesError):
    """The requested revision has been compacted away."""

    def __init__(self, message: str = "required revision has been compacted",
                 compact_revision: int = 0):
        super().__init__(message)
        self.compact_revision = compact_revision

    @property
    def compacted_revision(self) -> int:
        """python-etcd3's name (RevisionCompactedError.compacted_revision)."""
        return self.compact_revision


class FutureRevisionError(KvtreesError):
    """The requested revision is newer than the store's current revision."""


class LeaseNotFoundError(KvtreesError):
    """No lease with that id exists (never granted, revoked or expired)."""


class KeyNotFoundError(KvtreesError):
    """A put with ignore_value / ignore_lease on a key that does not exist."""


class ClusterError(KvtreesError):
    """A replicated store (kvtrees.cluster) cannot serve the request now."""


class NoLeaderError(ClusterError):
    """No leader is known: the member can neither commit nor confirm anything now
    (etcd's "etcdserver: no leader"; a client retries another member)."""

    def __init__(self, message: str = "no leader") -> None:
        super().__init__(message)


class RequestTimeoutError(ClusterError):
    """The request was not applied (or confirmed) in time; it may still be applied
    later (etcd's "etcdserver: request timed out")."""

    def __init__(self, message: str = "request timed out") -> None:
        super().__init__(message)


_by_code: dict[int, type] | None = None


def _code_map() -> dict[int, type]:
    global _by_code
    if _by_code is None:
        from ._native import lib
        _by_code = {
            lib.KVT_EIO: StorageError,
            lib.KVT_EFAULT: StorageError,
            lib.KVT_EFATAL: FatalError,
            lib.KVT_ENOSPC: NoSpaceError,
            lib.KVT_ECORRUPT: CorruptionError,
            lib.KVT_ENOMEM: OutOfMemoryError,
            lib.KVT_ELOCKED: LockedError,
            lib.KVT_ECLOSED: ClosedError,
            lib.KVT_EENGINE: EngineMismatchError,
            lib.KVT_ETOOLARGE: TooLargeError,
            lib.KVT_EREADONLY: ReadOnlyError,
            lib.KVT_EINVAL: InvalidArgumentError,
            lib.KVT_EVERSION: UnsupportedVersionError,
            lib.KVT_ENOLEASE: LeaseNotFoundError,
        }
    return _by_code


def error_from_code(rc: int) -> KvtreesError:
    """The exception for native return code rc, with the C detail message.

    Must be called on the thread that made the failing call, right after it
    (the detail is kept per thread and overwritten by the next error)."""
    from ._native import ffi, lib
    name = ffi.string(lib.kvt_strerror(rc)).decode("utf-8", "replace")
    detail = ffi.string(lib.kvt_errmsg()).decode("utf-8", "replace")
    cls = _code_map().get(rc, KvtreesError)
    return cls(f"{name}: {detail}" if detail else name)


def check(rc: int) -> int:
    """Raise the mapped exception if rc is a native error code; return rc otherwise."""
    if rc < 0:
        raise error_from_code(rc)
    return rc
