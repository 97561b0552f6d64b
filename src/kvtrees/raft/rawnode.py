"""The Ready / advance contract between the pure Raft core and the application.

The application runs this loop (single-threaded, or with the node behind one lock)::

    while True:
        node.tick()                # every tick interval
        node.step(msg)             # for each message received from a peer
        if node.has_ready():
            rd = node.ready()
            # 1. PERSIST, in this order, and fsync before going on:
            #      rd.snapshot (if any), rd.entries, rd.hard_state (if any).
            #    rd.must_sync says whether an fsync is needed at all.
            # 2. SEND rd.messages, only after step 1 is durable ("persistence before
            #    speech"): a vote, or an acknowledgement of entries, is a promise that
            #    must survive a crash.
            # 3. INSTALL rd.snapshot into the state machine, then APPLY
            #    rd.committed_entries in order (calling apply_conf_change for
            #    CONF_CHANGE entries); the applied index must be stored atomically with
            #    the state machine's changes.
            # 4. Serve rd.read_states whose index <= the applied index.
            node.advance(rd)

A crash at any point loses only what step 1 had not made durable, which is safe:
nothing not durable was promised to anyone. The leader counts its own copy of an entry
towards the commit quorum only at ``advance`` (after step 1), so a committed entry is
always durable on a quorum.
"""

from __future__ import annotations

from typing import List, Optional

from .config import Config
from .errors import StepLocalMsgError, StepPeerNotFoundError
from .node import Raft
from .progress import Progress
from .types import (LOCAL_MSGS, RESPONSE_MSGS, ConfChange, ConfState, Entry, EntryType,
                    HardState, Message, MsgType, ReadState, Snapshot, SoftState, StateType)


class Ready:
    """Everything the application must persist, send and apply (see the module doc)."""

    __slots__ = ("soft_state", "hard_state", "read_states", "entries", "snapshot",
                 "committed_entries", "messages", "must_sync")

    def __init__(self) -> None:
        self.soft_state: Optional[SoftState] = None
        self.hard_state: Optional[HardState] = None
        self.read_states: List[ReadState] = []
        self.entries: List[Entry] = []
        self.snapshot: Optional[Snapshot] = None
        self.committed_entries: List[Entry] = []
        self.messages: List[Message] = []
        self.must_sync = False

    def __repr__(self) -> str:
        return (f"Ready(hs={self.hard_state}, ents={len(self.entries)}, "
                f"committed={len(self.committed_entries)}, msgs={len(self.messages)}, "
                f"snap={self.snapshot is not None})")


class Status:
    """A read-only summary of a node (for Maintenance.Status and tests)."""

    def __init__(self, r: Raft) -> None:
        self.id = r.id
        self.term = r.term
        self.vote = r.vote
        self.commit = r.log.committed
        self.applied = r.log.applied
        self.lead = r.lead
        self.state = r.state
        self.lead_transferee = r.lead_transferee
        self.conf_state = r.prs.conf_state()
        self.progress = ({i: _copy_progress(p) for i, p in r.prs.progress.items()}
                         if r.state == StateType.LEADER else {})


def _copy_progress(p: Progress) -> dict:
    return {"match": p.match, "next": p.next, "state": p.state.name,
            "learner": p.is_learner}


class RawNode:
    """A Raft node driven by the application through tick/step/ready/advance."""

    def __init__(self, cfg: Config) -> None:
        self.raft = Raft(cfg)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()

    # ---- input -----------------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time. O(1) except when it triggers a heartbeat or election."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (pre-vote first if enabled)."""
        self.raft.step(Message(MsgType.HUP))

    def propose(self, data: bytes) -> None:
        """Propose one entry. Raises ProposalDroppedError when no leader can take it."""
        self.raft.step(Message(MsgType.PROP, frm=self.raft.id, entries=[Entry(data=data)]))

    def propose_batch(self, datas: List[bytes]) -> None:
        """Propose several entries in one message: appended together and replicated in
        one APP per follower (batching). O(len(datas))."""
        if datas:
            self.raft.step(Message(MsgType.PROP, frm=self.raft.id,
                                   entries=[Entry(data=d) for d in datas]))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a single-member change (applied on commit by apply_conf_change)."""
        self.raft.step(Message(MsgType.PROP, frm=self.raft.id,
                               entries=[Entry(data=cc.encode(), type=EntryType.CONF_CHANGE)]))

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; answered as a ReadState carrying ctx
        (unique per request) in a later Ready, or dropped when there is no leader."""
        self.raft.step(Message(MsgType.READ_INDEX, frm=self.raft.id, entries=[Entry(data=ctx)]))

    def transfer_leader(self, transferee: int) -> None:
        """Ask the leader to hand leadership to transferee (etcd's MoveLeader)."""
        self.raft.step(Message(MsgType.TRANSFER_LEADER, frm=transferee, to=self.raft.id))

    def step(self, m: Message) -> None:
        """Feed a message received from a peer."""
        if m.type in LOCAL_MSGS:
            raise StepLocalMsgError(f"{m.type.name} is local and cannot come from a peer")
        if m.type in RESPONSE_MSGS and m.frm not in self.raft.prs.progress:
            raise StepPeerNotFoundError(f"response from {m.frm}, not a member")
        self.raft.step(m)

    def report_unreachable(self, node_id: int) -> None:
        """The transport failed to deliver to node_id."""
        self.raft.step(Message(MsgType.UNREACHABLE, frm=node_id))

    def report_leader_lost(self, node_id: int) -> None:
        """The transport saw node_id's connection close (see Raft.leader_lost)."""
        self.raft.leader_lost(node_id)

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        """The transport delivered (or failed to deliver) a snapshot to node_id."""
        self.raft.step(Message(MsgType.SNAP_STATUS, frm=node_id, reject=not ok))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change; returns the new membership. O(members)."""
        return self.raft.apply_conf_change(cc)

    # ---- output ----------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Is there anything to persist, send or apply? O(1)."""
        r = self.raft
        if r.msgs or r.read_states or r.log.unstable.entries:
            return True
        if r.log.unstable.snapshot is not None or r.log.has_next_ents():
            return True
        if r.soft_state() != self._prev_soft:
            return True
        hs = r.hard_state()
        return not hs.is_empty() and hs != self._prev_hard

    def ready(self) -> Ready:
        """Collect the pending output. Must be followed by advance(rd)."""
        r = self.raft
        rd = Ready()
        rd.entries = r.log.unstable_entries()
        rd.committed_entries = r.log.next_ents()
        rd.snapshot = r.log.unstable.snapshot
        rd.messages, r.msgs = r.msgs, []
        rd.read_states, r.read_states = r.read_states, []
        ss = r.soft_state()
        if ss != self._prev_soft:
            rd.soft_state = ss
        hs = r.hard_state()
        if hs != self._prev_hard and not hs.is_empty():
            rd.hard_state = hs
        prev = self._prev_hard
        rd.must_sync = bool(rd.entries) or rd.snapshot is not None or (
            rd.hard_state is not None and (hs.term != prev.term or hs.vote != prev.vote))
        return rd

    def advance(self, rd: Ready) -> None:
        """The application persisted, sent and applied rd (in that order)."""
        r = self.raft
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.committed_entries:
            r.log.applied_to(rd.committed_entries[-1].index)
        elif rd.snapshot is not None and rd.snapshot.metadata.index > r.log.applied:
            r.log.applied_to(rd.snapshot.metadata.index)
        if rd.snapshot is not None:
            r.persisted_snapshot(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            r.persisted_to(last.index, last.term)

    def status(self) -> Status:
        """A snapshot of the node's state. O(members)."""
        return Status(self.raft)

    @property
    def id(self) -> int:
        """This node's id."""
        return self.raft.id

    @property
    def lead(self) -> int:
        """The leader this node knows of (NONE: unknown)."""
        return self.raft.lead

    def is_leader(self) -> bool:
        """Is this node the leader (as far as it knows)?"""
        return self.raft.state == StateType.LEADER and self.raft.lead == self.raft.id


__all__ = ["RawNode", "Ready", "Status"]
