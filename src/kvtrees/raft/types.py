"""Raft value types: entries, messages, hard state, snapshots, configuration changes.

These are plain values with no behaviour beyond encoding. Node ids are positive
ints; ``NONE`` (0) means "no node" (no leader known, no vote cast). Messages carry
``frm`` (``from`` is a Python keyword).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Optional, Sequence, Tuple

NONE = 0


class MsgType(IntEnum):
    """What a message asks for. Local messages (HUP, BEAT, PROP, ...) never leave a node,
    except PROP, READ_INDEX and TRANSFER_LEADER, which a follower forwards to its leader."""

    HUP = 0                # local: start an election (or pre-election)
    BEAT = 1               # local: leader, send heartbeats
    PROP = 2               # propose entries
    APP = 3                # append entries
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7               # install a snapshot
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10       # local: the transport could not reach ``frm``
    SNAP_STATUS = 11       # local: the transport reports a snapshot delivered or failed
    CHECK_QUORUM = 12      # local: leader, step down if a quorum was not heard from
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14       # leader -> transferee: campaign now, ignoring the lease
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


LOCAL_MSGS = frozenset({MsgType.HUP, MsgType.BEAT, MsgType.UNREACHABLE,
                        MsgType.SNAP_STATUS, MsgType.CHECK_QUORUM})
RESPONSE_MSGS = frozenset({MsgType.APP_RESP, MsgType.VOTE_RESP, MsgType.HEARTBEAT_RESP,
                           MsgType.UNREACHABLE, MsgType.READ_INDEX_RESP,
                           MsgType.PRE_VOTE_RESP})


def vote_resp_type(t: MsgType) -> MsgType:
    """The response type for a vote or pre-vote request."""
    return MsgType.VOTE_RESP if t == MsgType.VOTE else MsgType.PRE_VOTE_RESP


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class Entry:
    """One log entry. ``data`` is opaque to Raft except for CONF_CHANGE entries."""

    __slots__ = ("term", "index", "type", "data")

    def __init__(self, term: int = 0, index: int = 0, data: bytes = b"",
                 type: EntryType = EntryType.NORMAL) -> None:
        self.term = term
        self.index = index
        self.type = type
        self.data = data

    def size(self) -> int:
        """Bytes counted against max_size_per_msg (payload plus a fixed header)."""
        return len(self.data) + 24

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Entry) and self.term == other.term
                and self.index == other.index and self.type == other.type
                and self.data == other.data)

    def __hash__(self) -> int:
        return hash((self.term, self.index, self.type, self.data))

    def __repr__(self) -> str:
        kind = "" if self.type == EntryType.NORMAL else " conf"
        return f"Entry(t{self.term} i{self.index}{kind} {self.data[:16]!r})"


class HardState:
    """What must be durable before a node speaks: current term, vote, commit index."""

    __slots__ = ("term", "vote", "commit")

    def __init__(self, term: int = 0, vote: int = NONE, commit: int = 0) -> None:
        self.term = term
        self.vote = vote
        self.commit = commit

    def is_empty(self) -> bool:
        """True for a node that never persisted anything."""
        return self.term == 0 and self.vote == NONE and self.commit == 0

    def copy(self) -> "HardState":
        """An independent copy."""
        return HardState(self.term, self.vote, self.commit)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, HardState) and self.term == other.term
                and self.vote == other.vote and self.commit == other.commit)

    def __repr__(self) -> str:
        return f"HardState(term={self.term}, vote={self.vote}, commit={self.commit})"


class ConfState:
    """The membership: voters (count in quorums) and learners (only receive the log)."""

    __slots__ = ("voters", "learners")

    def __init__(self, voters: Sequence[int] = (), learners: Sequence[int] = ()) -> None:
        self.voters: Tuple[int, ...] = tuple(sorted(voters))
        self.learners: Tuple[int, ...] = tuple(sorted(learners))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ConfState) and self.voters == other.voters
                and self.learners == other.learners)

    def __repr__(self) -> str:
        return f"ConfState(voters={list(self.voters)}, learners={list(self.learners)})"


class SnapshotMetadata:
    __slots__ = ("index", "term", "conf_state")

    def __init__(self, index: int = 0, term: int = 0,
                 conf_state: Optional[ConfState] = None) -> None:
        self.index = index
        self.term = term
        self.conf_state = conf_state if conf_state is not None else ConfState()

    def __repr__(self) -> str:
        return f"SnapshotMetadata(index={self.index}, term={self.term}, {self.conf_state})"


class Snapshot:
    """The application state up to ``metadata.index`` plus the membership at that point."""

    __slots__ = ("data", "metadata")

    def __init__(self, data: bytes = b"", metadata: Optional[SnapshotMetadata] = None) -> None:
        self.data = data
        self.metadata = metadata if metadata is not None else SnapshotMetadata()

    def is_empty(self) -> bool:
        """True for the absent snapshot (index 0)."""
        return self.metadata.index == 0

    def __repr__(self) -> str:
        return f"Snapshot({self.metadata}, {len(self.data)} bytes)"


EMPTY_SNAPSHOT = Snapshot()


class Message:
    """A Raft message. Fields not used by a type keep their zero values.

    For APP: ``index``/``log_term`` identify the entry preceding ``entries``.
    For APP_RESP: ``index`` is the last matching index (or the rejected one),
    ``reject_hint``/``log_term`` let the leader skip a whole conflicting term.
    For votes: ``index``/``log_term`` describe the candidate's last entry.
    """

    __slots__ = ("type", "to", "frm", "term", "log_term", "index", "entries", "commit",
                 "snapshot", "reject", "reject_hint", "context")

    def __init__(self, type: MsgType, to: int = NONE, frm: int = NONE, term: int = 0,
                 log_term: int = 0, index: int = 0, entries: Sequence[Entry] = (),
                 commit: int = 0, snapshot: Optional[Snapshot] = None, reject: bool = False,
                 reject_hint: int = 0, context: bytes = b"") -> None:
        self.type = type
        self.to = to
        self.frm = frm
        self.term = term
        self.log_term = log_term
        self.index = index
        self.entries = list(entries)
        self.commit = commit
        self.snapshot = snapshot
        self.reject = reject
        self.reject_hint = reject_hint
        self.context = context

    def __repr__(self) -> str:
        extra = f" ents={len(self.entries)}" if self.entries else ""
        rej = f" reject(hint={self.reject_hint})" if self.reject else ""
        return (f"Msg({self.type.name} {self.frm}->{self.to} t{self.term} "
                f"lt{self.log_term} i{self.index} c{self.commit}{extra}{rej})")


class ConfChangeType(IntEnum):
    ADD_NODE = 0         # add a voter, or promote a learner to voter
    REMOVE_NODE = 1
    ADD_LEARNER = 2      # add a learner, or demote a voter to learner


_CC = struct.Struct(">BQ")


class ConfChange:
    """A single-member configuration change, carried in a CONF_CHANGE entry's data."""

    __slots__ = ("type", "node_id", "context")

    def __init__(self, type: ConfChangeType, node_id: int, context: bytes = b"") -> None:
        self.type = type
        self.node_id = node_id
        self.context = context

    def encode(self) -> bytes:
        """The entry data for this change."""
        return _CC.pack(int(self.type), self.node_id) + self.context

    @classmethod
    def decode(cls, data: bytes) -> "ConfChange":
        """Parse entry data; RaftError if malformed."""
        from .errors import RaftError
        if len(data) < _CC.size:
            raise RaftError(f"conf change entry of {len(data)} bytes is too short")
        t, node = _CC.unpack_from(data)
        try:
            kind = ConfChangeType(t)
        except ValueError:
            raise RaftError(f"unknown conf change type {t}") from None
        return cls(kind, node, bytes(data[_CC.size:]))

    def __repr__(self) -> str:
        return f"ConfChange({self.type.name} {self.node_id})"


class StateType(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class SoftState:
    """Volatile state reported in Ready when it changes (not persisted)."""

    __slots__ = ("lead", "state")

    def __init__(self, lead: int, state: StateType) -> None:
        self.lead = lead
        self.state = state

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, SoftState) and self.lead == other.lead
                and self.state == other.state)

    def __repr__(self) -> str:
        return f"SoftState(lead={self.lead}, {self.state.name})"


class ReadState:
    """A ReadIndex answer: once applied >= index, a read for ``request_ctx`` is
    linearizable."""

    __slots__ = ("index", "request_ctx")

    def __init__(self, index: int, request_ctx: bytes) -> None:
        self.index = index
        self.request_ctx = request_ctx

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ReadState) and self.index == other.index
                and self.request_ctx == other.request_ctx)

    def __repr__(self) -> str:
        return f"ReadState(index={self.index}, ctx={self.request_ctx!r})"
