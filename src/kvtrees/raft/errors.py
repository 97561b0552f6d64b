"""Raft errors. All derive from :class:`kvtrees.errors.KvtreesError`.

The log errors mirror etcd-io/raft's storage contract: a Storage raises
:class:`LogCompactedError` for an index below its first index and
:class:`LogUnavailableError` for one above its last index.
"""

from __future__ import annotations

from ..errors import CorruptionError, KvtreesError, StorageError

__all__ = ["RaftError", "LogCompactedError", "LogUnavailableError",
           "SnapshotOutOfDateError", "SnapshotTemporarilyUnavailableError",
           "ProposalDroppedError", "StepLocalMsgError", "StepPeerNotFoundError",
           "ConfChangeError", "RaftLogCorruptionError", "RaftLogStorageError"]


class RaftError(KvtreesError):
    """Base class of Raft errors (also used for broken internal invariants)."""


class LogCompactedError(RaftError):
    """The requested index is at or below the storage's snapshot (compacted away)."""


class LogUnavailableError(RaftError):
    """The requested index is beyond the end of the log."""


class SnapshotOutOfDateError(RaftError):
    """A snapshot older than the one already held was offered."""


class SnapshotTemporarilyUnavailableError(RaftError):
    """The storage cannot produce a snapshot right now; the leader retries later."""


class ProposalDroppedError(RaftError):
    """The proposal was not appended: no leader known, a leadership transfer is in
    progress, or this node is not the leader and forwarding is impossible."""


class StepLocalMsgError(RaftError):
    """A local-only message type was handed to RawNode.step from the network."""


class StepPeerNotFoundError(RaftError):
    """A response from a node that is not in the configuration."""


class ConfChangeError(RaftError, ValueError):
    """The configuration change is invalid (e.g. it would remove the last voter)."""


class RaftLogCorruptionError(CorruptionError, RaftError):
    """The durable Raft log failed a checksum or structural check."""


class RaftLogStorageError(StorageError, RaftError):
    """An I/O call of the durable Raft log failed; the log must be reopened."""
