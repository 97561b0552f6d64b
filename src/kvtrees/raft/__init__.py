"""Raft consensus for kvtrees: a pure state machine (no I/O, threads or clocks) in the
style of etcd-io/raft, plus a durable log for it.

Modules, one concept each:

* :mod:`.types`       messages, entries, hard state, snapshots, conf changes
* :mod:`.storage`     the stable-storage interface and an in-memory implementation
* :mod:`.log`         the Raft log (stable storage + unstable tail)
* :mod:`.progress`    the leader's per-follower flow control and quorum tracking
* :mod:`.readonly`    ReadIndex bookkeeping for linearizable reads
* :mod:`.confchange`  single-member membership changes and learners
* :mod:`.node`        the Raft state machine (elections, replication, commit)
* :mod:`.rawnode`     the Ready / advance contract with the application
* :mod:`.bootstrap`   the self-describing first entries of a new cluster
* :mod:`.filelog`     a durable, checksummed, fsynced Raft log on disk
"""

from .bootstrap import bootstrap, bootstrap_entries
from .config import Config
from .errors import (ConfChangeError, LogCompactedError, LogUnavailableError,
                     ProposalDroppedError, RaftError, RaftLogCorruptionError,
                     RaftLogStorageError, SnapshotOutOfDateError, StepLocalMsgError,
                     StepPeerNotFoundError)
from .node import Raft
from .progress import Progress, ProgressState
from .rawnode import RawNode, Ready, Status
from .storage import MemoryStorage, Storage
from .types import (NONE, ConfChange, ConfChangeType, ConfState, Entry, EntryType,
                    HardState, Message, MsgType, ReadState, Snapshot, SnapshotMetadata,
                    SoftState, StateType)

__all__ = [
    "bootstrap", "bootstrap_entries", "Config", "Raft", "RawNode", "Ready", "Status", "MemoryStorage", "Storage",
    "Progress", "ProgressState", "NONE", "ConfChange", "ConfChangeType", "ConfState",
    "Entry", "EntryType", "HardState", "Message", "MsgType", "ReadState", "Snapshot",
    "SnapshotMetadata", "SoftState", "StateType", "RaftError", "LogCompactedError",
    "LogUnavailableError", "ProposalDroppedError", "ConfChangeError", "SnapshotOutOfDateError",
    "StepLocalMsgError", "StepPeerNotFoundError", "RaftLogCorruptionError",
    "RaftLogStorageError",
]
