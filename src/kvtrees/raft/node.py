"""The Raft state machine: roles, terms, elections, replication, commit.

Pure: no I/O, threads or clocks. Time advances only through :meth:`Raft.tick`, input
arrives only through :meth:`Raft.step`, and output accumulates in ``msgs``,
``read_states`` and the log's unstable part, which :class:`~kvtrees.raft.rawnode.RawNode`
hands to the application as a Ready. Modelled on etcd-io/raft.

Rules worth stating (each has a unit test):

* A message of a higher term makes us a follower of that term, except a (pre-)vote
  that arrives while we believe a leader is alive (check-quorum lease) and is not a
  forced leadership transfer; a pre-vote never changes our term.
* A stale-term APP or HEARTBEAT is answered (with our term) so a deposed leader
  learns it was deposed; stale messages are otherwise dropped.
* A candidate's log must be at least as up to date as ours for our vote (§5.4.1).
* The leader counts itself towards a commit only for entries its own storage has
  made durable (``persisted_to``), and commits only entries of its own term (§5.4.2).
* One configuration change at a time, and none before the leader committed an entry
  of its own term.
"""

from __future__ import annotations

import random
from typing import Callable, List, Optional

from . import confchange
from .config import Config
from .errors import LogCompactedError, ProposalDroppedError, RaftError, \
    SnapshotTemporarilyUnavailableError
from .log import RaftLog
from .progress import ProgressState, ProgressTracker
from .readonly import ReadOnly
from .types import (NONE, ConfChange, ConfState, Entry, EntryType, HardState, Message, MsgType,
                    ReadState, Snapshot, SoftState, StateType, vote_resp_type)

CAMPAIGN_PRE = "pre"
CAMPAIGN_ELECTION = "election"
CAMPAIGN_TRANSFER = "transfer"
TRANSFER_CONTEXT = b"CampaignTransfer"

_UNTERMED = (MsgType.PROP, MsgType.READ_INDEX, MsgType.TRANSFER_LEADER)


class Raft:
    """One member's Raft state. Use through RawNode unless testing a rule directly."""

    def __init__(self, cfg: Config) -> None:
        cfg.validate()
        self.id = cfg.id
        self.log = RaftLog(cfg.storage, cfg.max_committed_size_per_ready)
        self.max_msg_size = cfg.max_size_per_msg
        self.prs = ProgressTracker(cfg.max_inflight_msgs)
        self.election_timeout = cfg.election_tick
        self.heartbeat_timeout = cfg.heartbeat_tick
        self.check_quorum = cfg.check_quorum
        self.pre_vote = cfg.pre_vote
        self.rng = cfg.rng if cfg.rng is not None else random.Random(cfg.id)
        self.read_only = ReadOnly()
        self.msgs: List[Message] = []
        self.read_states: List[ReadState] = []
        self.pending_read_index_msgs: List[Message] = []
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout
        self._tick: Callable[[], None] = self._tick_election
        self._step: Callable[[Message], None] = self._step_follower

        hs, cs = cfg.storage.initial_state()
        if not cs.voters and not cs.learners:
            cs = ConfState(cfg.peers, cfg.learners)
        self._load_conf_state(cs)
        if not hs.is_empty():
            self._load_hard_state(hs)
        if cfg.applied > 0:
            self.log.applied_to(cfg.applied)
        self.become_follower(self.term, NONE)

    # ---- state snapshots -------------------------------------------------------------

    def hard_state(self) -> HardState:
        """The state to persist: term, vote, commit. O(1)."""
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        """Leader and role (volatile). O(1)."""
        return SoftState(self.lead, self.state)

    def promotable(self) -> bool:
        """May this node campaign? Only voters may."""
        return self.id in self.prs.voters

    def _load_hard_state(self, hs: HardState) -> None:
        if hs.commit > self.log.last_index():
            raise RaftError(f"hard state commit {hs.commit} out of range "
                            f"[{self.log.committed}, {self.log.last_index()}]")
        # A commit below the snapshot means the snapshot reached the disk but the hard
        # state written after it did not: a snapshot only holds committed state.
        self.log.committed = max(hs.commit, self.log.committed)
        self.term = hs.term
        self.vote = hs.vote

    def _load_conf_state(self, cs: ConfState) -> None:
        self.prs = ProgressTracker(self.prs.max_inflight)
        nxt = self.log.last_index() + 1
        for v in cs.voters:
            self.prs.init_progress(v, 0, nxt, False)
        for lrn in cs.learners:
            self.prs.init_progress(lrn, 0, nxt, True)

    # ---- sending ---------------------------------------------------------------------

    def send(self, m: Message) -> None:
        """Queue m for the Ready, stamping our id and (for most types) our term."""
        m.frm = self.id
        if m.type in (MsgType.VOTE, MsgType.VOTE_RESP, MsgType.PRE_VOTE, MsgType.PRE_VOTE_RESP):
            if m.term == 0:
                raise RaftError(f"{m.type.name} must carry a term")
        elif m.type not in _UNTERMED:
            m.term = self.term
        self.msgs.append(m)

    def send_append(self, to: int, send_if_empty: bool = True) -> bool:
        """Send the entries `to` needs next (or a snapshot). Returns whether a message
        was sent. Respects flow control."""
        pr = self.prs.progress[to]
        if pr.is_paused():
            return False
        try:
            prev_term = self.log.term(pr.next - 1)
            ents = self.log.entries(pr.next, self.max_msg_size)
        except LogCompactedError:
            return self._send_snapshot(to)
        if not ents and not send_if_empty:
            return False
        m = Message(MsgType.APP, to=to, index=pr.next - 1, log_term=prev_term,
                    entries=ents, commit=self.log.committed)
        if pr.state == ProgressState.REPLICATE:
            if ents:
                last = ents[-1].index
                pr.optimistic_update(last)
                pr.inflights.add(last)
        elif pr.state == ProgressState.PROBE:
            pr.probe_sent = True
        self.send(m)
        return True

    def _send_snapshot(self, to: int) -> bool:
        pr = self.prs.progress[to]
        if not pr.recent_active:
            return False  # do not ship a snapshot to a peer that may be down
        try:
            snap = self.log.snapshot()
        except SnapshotTemporarilyUnavailableError:
            return False
        if snap.is_empty():
            raise RaftError(f"entries for {to} are compacted but there is no snapshot")
        pr.become_snapshot(snap.metadata.index)
        self.send(Message(MsgType.SNAP, to=to, snapshot=snap))
        return True

    def bcast_append(self) -> None:
        """send_append to every other member. O(members)."""
        for i, _ in self.prs.visit():
            if i != self.id:
                self.send_append(i)

    def bcast_heartbeat(self, ctx: Optional[bytes] = None) -> None:
        """Heartbeat every other member, carrying ctx (the newest pending
        ReadIndex context by default). O(members)."""
        if ctx is None:
            ctx = self.read_only.last_pending_request_ctx()
        for i, pr in self.prs.visit():
            if i != self.id:
                commit = min(pr.match, self.log.committed)
                self.send(Message(MsgType.HEARTBEAT, to=i, commit=commit, context=ctx))

    # ---- role changes ----------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout)
        self.lead_transferee = NONE
        self.prs.reset_votes()
        last = self.log.last_index()
        durable = self._durable_last_index()
        for i, pr in self.prs.visit():
            learner = pr.is_learner
            self.prs.init_progress(i, 0, last + 1, learner)
            if i == self.id:
                self.prs.progress[i].match = durable
        self.pending_conf_index = 0
        self.read_only.reset()
        self.pending_read_index_msgs = []

    def _durable_last_index(self) -> int:
        """The last index our own storage holds durably (what the leader may count)."""
        if self.log.unstable.snapshot is not None:
            return 0
        return self.log.unstable.offset - 1

    def become_follower(self, term: int, lead: int) -> None:
        """Follow lead (NONE: unknown) in term."""
        self._step = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER

    def become_pre_candidate(self) -> None:
        """Start a pre-election: ask for votes for term + 1 without changing term."""
        if self.state == StateType.LEADER:
            raise RaftError("leader cannot become pre-candidate")
        # Neither term nor vote changes: a pre-election is harmless to lose.
        self._step = self._step_candidate
        self.prs.reset_votes()
        self._tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE

    def become_candidate(self) -> None:
        """Start an election: term + 1, vote for ourselves."""
        if self.state == StateType.LEADER:
            raise RaftError("leader cannot become candidate")
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE

    def become_leader(self) -> None:
        """Lead: reset progress and append an empty entry of the new term."""
        if self.state == StateType.FOLLOWER:
            raise RaftError("follower cannot become leader without an election")
        self._step = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        self.prs.progress[self.id].become_replicate()
        self.append_entry([Entry()])
        # A new conf change waits until this term's first entry is applied: that covers
        # any unapplied change of an earlier term, and makes the leader commit in its own
        # term first (the fix for the single-server change bug).
        self.pending_conf_index = self.log.last_index()

    # ---- ticks -----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(MsgType.HUP, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MsgType.CHECK_QUORUM, frm=self.id))
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()  # the transfer took an election timeout
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MsgType.BEAT, frm=self.id))

    def leader_lost(self, peer: int) -> None:
        """The transport saw the connection from ``peer`` close. If it is our leader
        (a crashed process closes its sockets at once), stop waiting out the full
        election timeout: forget the leader, which also ends the check-quorum lease,
        and campaign within the first half of the random part of the timeout (drawn
        again). Safe for Raft (an election
        may start at any time); pre-vote keeps it from disturbing a leader the others
        still hear. O(1)."""
        if self.state != StateType.FOLLOWER or self.lead != peer or peer == NONE:
            return
        self.lead = NONE
        self.election_elapsed = max(self.election_elapsed, self.election_timeout)
        # the random part drawn again from the first half of the timeout: the followers
        # still campaign apart from each other (pre-vote and a vote round take one round
        # trip, far below a tick), and the cluster is not left waiting up to a whole
        # election timeout more
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            max(1, self.election_timeout // 2))

    # ---- elections -------------------------------------------------------------------

    def _has_unapplied_conf_change(self) -> bool:
        lo = max(self.log.applied + 1, self.log.first_index())
        if lo > self.log.committed:
            return False
        return any(e.type == EntryType.CONF_CHANGE
                   for e in self.log.slice(lo, self.log.committed + 1))

    def hup(self, kind: str) -> None:
        """Campaign (kind: pre, election or transfer) unless we lead, are not a
        voter, or have an unapplied conf change. O(unapplied entries)."""
        if self.state == StateType.LEADER or not self.promotable():
            return
        if self._has_unapplied_conf_change():
            return  # our configuration may be about to change; campaign after applying
        self.campaign(kind)

    def campaign(self, kind: str) -> None:
        """Ask every voter for its (pre-)vote. O(voters)."""
        if not self.promotable():
            return
        if kind == CAMPAIGN_PRE:
            self.become_pre_candidate()
            vote_type, term = MsgType.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MsgType.VOTE, self.term
        if self._poll(self.id, True) is True:
            # A single voter wins at once.
            if kind == CAMPAIGN_PRE:
                self.campaign(CAMPAIGN_ELECTION)
            else:
                self.become_leader()
            return
        ctx = TRANSFER_CONTEXT if kind == CAMPAIGN_TRANSFER else b""
        last, last_term = self.log.last_index(), self.log.last_term()
        for v in sorted(self.prs.voters):
            if v != self.id:
                self.send(Message(vote_type, to=v, term=term, index=last,
                                  log_term=last_term, context=ctx))

    def _poll(self, node_id: int, granted: bool) -> Optional[bool]:
        self.prs.record_vote(node_id, granted)
        return self.prs.tally_votes()[2]

    # ---- the entry point -------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Process one message (local or from a peer). May raise ProposalDroppedError
        for a local proposal that cannot be appended."""
        if m.term == 0:
            pass  # local message (or a forwarded proposal / read)
        elif m.term > self.term:
            if not self._accept_higher_term(m):
                return
        elif m.term < self.term:
            self._on_stale_term(m)
            return
        t = m.type
        if t == MsgType.HUP:
            self.hup(CAMPAIGN_PRE if self.pre_vote else CAMPAIGN_ELECTION)
        elif t == MsgType.VOTE or t == MsgType.PRE_VOTE:
            self._handle_vote_request(m)
        else:
            self._step(m)

    def _accept_higher_term(self, m: Message) -> bool:
        """Adopt m's term if appropriate. False means: ignore m entirely."""
        if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            force = m.context == TRANSFER_CONTEXT
            in_lease = (self.check_quorum and self.lead != NONE
                        and self.election_elapsed < self.election_timeout)
            if not force and in_lease:
                return False  # a leader is alive: do not let a partitioned node disrupt it
        if m.type == MsgType.PRE_VOTE:
            return True  # never change term on a pre-vote
        if m.type == MsgType.PRE_VOTE_RESP and not m.reject:
            return True  # the term is the one we would campaign in; wait for the quorum
        if m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            self.become_follower(m.term, m.frm)
        else:
            self.become_follower(m.term, NONE)
        return True

    def _on_stale_term(self, m: Message) -> None:
        if (self.check_quorum or self.pre_vote) and m.type in (MsgType.HEARTBEAT, MsgType.APP):
            # The sender is a deposed leader that may never hear a higher term otherwise
            # (its own (pre-)votes are ignored while we are in lease): tell it ours.
            self.send(Message(MsgType.APP_RESP, to=m.frm))
        elif m.type == MsgType.PRE_VOTE:
            self.send(Message(MsgType.PRE_VOTE_RESP, to=m.frm, term=self.term, reject=True))

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (self.vote == m.frm
                    or (self.vote == NONE and self.lead == NONE)
                    or (m.type == MsgType.PRE_VOTE and m.term > self.term))
        resp = vote_resp_type(m.type)
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # A pre-vote grant carries the candidate's future term so it is not stale.
            self.send(Message(resp, to=m.frm, term=m.term))
            if m.type == MsgType.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self.send(Message(resp, to=m.frm, term=self.term, reject=True))

    def _drop_proposal(self, m: Message, why: str) -> None:
        if m.frm in (NONE, self.id):
            raise ProposalDroppedError(why)
        # A forwarded proposal: the original proposer times out and retries.

    # ---- leader ----------------------------------------------------------------------

    def append_entry(self, ents: List[Entry]) -> None:
        """Leader: give ents our term and the next indexes and append them."""
        last = self.log.last_index()
        for i, e in enumerate(ents):
            e.term = self.term
            e.index = last + 1 + i
        self.log.append(ents)
        # Our own acknowledgement comes from persisted_to(), after the fsync.

    def persisted_to(self, index: int, term: int) -> None:
        """The application made entries up to (index, term) durable."""
        self.log.stable_to(index, term)
        self._self_ack(index, term)

    def persisted_snapshot(self, index: int) -> None:
        """The application made the unstable snapshot at index durable."""
        self.log.stable_snap_to(index)

    def _self_ack(self, index: int, term: int) -> None:
        if self.state != StateType.LEADER or not self.log.match_term(index, term):
            return
        pr = self.prs.progress.get(self.id)
        if pr is not None and pr.maybe_update(index) and self.maybe_commit():
            self.bcast_append()

    def maybe_commit(self) -> bool:
        """Leader: advance commit to the quorum's match if it is of our term.
        O(voters log voters)."""
        if self.log.maybe_commit(self.prs.committed(), self.term):
            self._release_pending_read_index()
            return True
        return False

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def _release_pending_read_index(self) -> None:
        if not self.pending_read_index_msgs or not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index_msgs = self.pending_read_index_msgs, []
        for m in pending:
            self._leader_read_index(m)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MsgType.BEAT:
            self.bcast_heartbeat()
        elif t == MsgType.CHECK_QUORUM:
            self._check_quorum()
        elif t == MsgType.PROP:
            self._leader_propose(m)
        elif t == MsgType.READ_INDEX:
            self._leader_read_index(m)
        else:
            pr = self.prs.progress.get(m.frm)
            if pr is None:
                return  # not (any longer) a member
            handler = self._peer_handlers.get(t)
            if handler is not None:
                handler(self, m, pr)

    def _check_quorum(self) -> None:
        me = self.prs.progress.get(self.id)
        if me is not None:
            me.recent_active = True
        if not self.prs.quorum_active():
            self.become_follower(self.term, NONE)
        for i, pr in self.prs.progress.items():
            if i != self.id:
                pr.recent_active = False

    def _leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise RaftError("empty proposal")
        if self.id not in self.prs.progress:
            return self._drop_proposal(m, "this node was removed from the cluster")
        if self.lead_transferee != NONE:
            return self._drop_proposal(m, f"leadership is moving to {self.lead_transferee}")
        last = self.log.last_index()
        ents = []
        for i, e in enumerate(m.entries):
            if e.type == EntryType.CONF_CHANGE:
                if self.pending_conf_index > self.log.applied:
                    # Another change is not applied yet: keep the slot, drop the change.
                    e = Entry()
                else:
                    self.pending_conf_index = last + i + 1
            ents.append(Entry(data=e.data, type=e.type))
        self.append_entry(ents)
        self.bcast_append()

    def _leader_read_index(self, m: Message) -> None:
        if self.prs.is_singleton():
            self._answer_read(m, self.log.committed)
            return
        if not self._committed_entry_in_current_term():
            # Our commit index may lag the previous leader's until we commit in our term.
            self.pending_read_index_msgs.append(m)
            return
        ctx = m.entries[0].data
        self.read_only.add_request(self.log.committed, m)
        self.read_only.recv_ack(self.id, ctx)
        self.bcast_heartbeat(ctx)

    def _answer_read(self, req: Message, index: int) -> None:
        if req.frm in (NONE, self.id):
            self.read_states.append(ReadState(index, req.entries[0].data))
        else:
            self.send(Message(MsgType.READ_INDEX_RESP, to=req.frm, index=index,
                              entries=req.entries))

    def _on_app_resp(self, m: Message, pr) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self.send_append(m.frm)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            self.bcast_append()
        elif old_paused:
            self.send_append(m.frm)
        while self.send_append(m.frm, send_if_empty=False):
            pass  # pipeline: fill the in-flight window
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self.send(Message(MsgType.TIMEOUT_NOW, to=m.frm))

    def _on_heartbeat_resp(self, m: Message, pr) -> None:
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.match < self.log.last_index():
            self.send_append(m.frm)
        if not m.context:
            return
        acks = self.read_only.recv_ack(m.frm, m.context)
        if acks is None:
            return
        if sum(1 for v in self.prs.voters if acks.get(v)) < self.prs.quorum():
            return
        for rs in self.read_only.advance(m.context):
            self._answer_read(rs.req, rs.index)

    def _on_snap_status(self, m: Message, pr) -> None:
        if pr.state != ProgressState.SNAPSHOT:
            return
        if m.reject:
            pr.pending_snapshot = 0
        pr.become_probe()
        # Wait for the follower's answer (or a heartbeat) before probing again.
        pr.probe_sent = True

    def _on_unreachable(self, m: Message, pr) -> None:
        if pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def _on_transfer_leader(self, m: Message, pr) -> None:
        if pr.is_learner:
            return
        transferee = m.frm
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self.abort_leader_transfer()
        if transferee == self.id:
            return
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        self.lead_transferee = transferee
        if pr.match == self.log.last_index():
            self.send(Message(MsgType.TIMEOUT_NOW, to=transferee))
        else:
            self.send_append(transferee)

    _peer_handlers = {
        MsgType.APP_RESP: _on_app_resp,
        MsgType.HEARTBEAT_RESP: _on_heartbeat_resp,
        MsgType.SNAP_STATUS: _on_snap_status,
        MsgType.UNREACHABLE: _on_unreachable,
        MsgType.TRANSFER_LEADER: _on_transfer_leader,
    }

    def abort_leader_transfer(self) -> None:
        """Forget a pending leadership transfer."""
        self.lead_transferee = NONE

    # ---- candidate -------------------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = (MsgType.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE
                   else MsgType.VOTE_RESP)
        if t == MsgType.PROP:
            self._drop_proposal(m, "no leader (election in progress)")
        elif t in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            self.become_follower(m.term, m.frm)  # a leader of our term exists
            self._step_follower(m)
        elif t == my_resp:
            result = self._poll(m.frm, not m.reject)
            if result is True:
                if self.state == StateType.PRE_CANDIDATE:
                    self.campaign(CAMPAIGN_ELECTION)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif result is False:
                self.become_follower(self.term, NONE)

    # ---- follower --------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MsgType.PROP:
            if self.lead == NONE:
                return self._drop_proposal(m, "no leader known")
            m.to = self.lead
            self.send(m)
        elif t == MsgType.APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif t == MsgType.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self.log.commit_to(m.commit)
            self.send(Message(MsgType.HEARTBEAT_RESP, to=m.frm, context=m.context))
        elif t == MsgType.SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif t in (MsgType.TRANSFER_LEADER, MsgType.READ_INDEX):
            if self.lead != NONE:
                m.to = self.lead
                self.send(m)
        elif t == MsgType.TIMEOUT_NOW:
            # Campaign at once with a forced vote (the leader asked us to).
            self.hup(CAMPAIGN_TRANSFER)
        elif t == MsgType.READ_INDEX_RESP:
            if m.entries:
                self.read_states.append(ReadState(m.index, m.entries[0].data))

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self.send(Message(MsgType.APP_RESP, to=m.frm, index=self.log.committed))
            return
        lastnewi, ok = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if ok:
            self.send(Message(MsgType.APP_RESP, to=m.frm, index=lastnewi))
            return
        hint = min(m.index, self.log.last_index())
        hint, hint_term = self.log.find_conflict_by_term(hint, m.log_term)
        self.send(Message(MsgType.APP_RESP, to=m.frm, index=m.index, reject=True,
                          reject_hint=hint, log_term=hint_term))

    def _handle_snapshot(self, m: Message) -> None:
        if m.snapshot is not None and self.restore(m.snapshot):
            self.send(Message(MsgType.APP_RESP, to=m.frm, index=self.log.last_index()))
        else:
            self.send(Message(MsgType.APP_RESP, to=m.frm, index=self.log.committed))

    def restore(self, s: Snapshot) -> bool:
        """Install snapshot s if it is ahead of our commit. Returns whether the log was
        replaced (False: ignored, or our log already had s's last entry)."""
        meta = s.metadata
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            self.log.commit_to(meta.index)  # we already have it: just fast-forward
            return False
        self.log.restore(s)
        self._load_conf_state(meta.conf_state)
        return True

    # ---- membership ------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change (called by the application when it applies the
        entry). Returns the new configuration."""
        cs = confchange.apply(self.prs.conf_state(), cc)
        self._switch_to_config(cs)
        return cs

    def _switch_to_config(self, cs: ConfState) -> None:
        nxt = self.log.last_index() + 1
        for i in list(self.prs.progress):
            if i not in cs.voters and i not in cs.learners:
                self.prs.remove(i)
        for v in cs.voters:
            pr = self.prs.progress.get(v)
            if pr is None:
                self.prs.init_progress(v, 0, nxt, False)
            elif pr.is_learner:
                pr.is_learner = False
                self.prs.learners.discard(v)
                self.prs.voters.add(v)
        for lrn in cs.learners:
            pr = self.prs.progress.get(lrn)
            if pr is None:
                self.prs.init_progress(lrn, 0, nxt, True)
            elif not pr.is_learner:
                pr.is_learner = True
                self.prs.voters.discard(lrn)
                self.prs.learners.add(lrn)
        if self.state != StateType.LEADER:
            return
        if self.id not in self.prs.voters:
            # Removed (or never a voter): let the others know the commit, then step down.
            self.bcast_append()
            self.become_follower(self.term, NONE)
            return
        if self.lead_transferee != NONE and self.lead_transferee not in self.prs.voters:
            self.abort_leader_transfer()
        if self.maybe_commit():
            self.bcast_append()
        else:
            for i, _ in self.prs.visit():
                if i != self.id:
                    self.send_append(i, send_if_empty=False)
