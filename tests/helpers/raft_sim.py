"""Deterministic simulation of a Raft cluster, with Raft's safety properties checked
after every step.

Everything is driven by one seeded ``random.Random``: the same seed gives the same
run, so a failure is replayed by its seed. Time is a global tick counter; a message
sent at time t is delivered at t + a random delay (so messages reorder; a few are
held back for several election timeouts and arrive from an old term), unless the
network drops it (random loss, or a partition, which may be one-directional); it may
also be delivered twice.

A *step* is one message delivery or one tick of one node. After each step the node
that moved runs its Ready loop exactly as the contract in ``kvtrees.raft.rawnode``
says (persist, then send, then apply), and the checker verifies, incrementally:

* election safety: at most one leader per term;
* log matching: an (index, term) pair always names the same entry with the same
  predecessor term, so equal (index, term) means equal prefixes;
* leader completeness: a new leader's log holds the highest entry known committed;
* state machine safety: every member applies the same entry at each index, with no
  gaps, and a snapshot installs exactly the state other members had at its index;
* read-index safety: a ReadIndex answer is never below an entry that was applied
  somewhere before the read was asked.

A crash drops the node's volatile state; optionally it happens in the middle of
persisting a Ready, so only a prefix of its entries (and maybe no hard state) reaches
the "disk" and none of its messages are sent. The disk (a MemoryStorage plus the
state machine's applied index, hash and snapshot) survives.
"""

from __future__ import annotations

import heapq
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Set, Tuple

from kvtrees.raft import (ConfChange, ConfChangeType, ConfState, Config, EntryType, HardState,
                          Message,
                          MemoryStorage, MsgType, ProposalDroppedError, RawNode, StateType,
                          StepPeerNotFoundError, bootstrap)


class SafetyViolation(AssertionError):
    """One of Raft's safety properties failed; the message says which and where."""


@dataclass
class Faults:
    """Per-step fault probabilities of a run (0 disables a fault)."""

    drop: float = 0.02            # a message is lost
    duplicate: float = 0.02       # a message is delivered twice
    max_delay: float = 3.0        # delivery delay, uniform in [0, max_delay) ticks
    late: float = 0.005           # a message is held back for up to late_ticks instead
    late_ticks: float = 60.0      # (several election timeouts: arrives from an old term)
    crash: float = 0.002          # per tick: crash a random live node
    torn_crash: float = 0.5       # share of crashes that tear the Ready being persisted
    restart: float = 0.02         # per tick: restart a random crashed node
    partition: float = 0.003      # per tick: start a random (maybe asymmetric) partition
    heal: float = 0.02            # per tick: heal the partition
    propose: float = 0.3          # per tick: a client proposes through a random node
    read: float = 0.05            # per tick: a ReadIndex through a random node
    transfer: float = 0.002       # per tick: ask the leader to transfer leadership
    conf_change: float = 0.003    # per tick: start the next membership change
    snapshot_every: int = 40      # applied entries between snapshots (0: never)


_SNAP = struct.Struct(">QI")


class SimNode:
    """A member: its disk (survives crashes) and, while alive, its RawNode.

    ``open_disk(node_id)`` opens the node's durable log; by default a MemoryStorage
    that simply survives the crash. With a file-backed log, a crash closes it and a
    restart reopens it from its directory, so recovery runs on every restart."""

    def __init__(self, node_id: int, founders: Tuple[int, ...], rng: random.Random,
                 open_disk: Optional[Callable[[int], MemoryStorage]] = None) -> None:
        self.id = node_id
        self.open_disk = open_disk
        self.disk = open_disk(node_id) if open_disk else MemoryStorage()
        if founders:
            bootstrap(self.disk, founders)
        self.sm_index = 0          # durable with sm_hash (one atomic write in a real store)
        self.sm_hash = 0
        self.conf = ConfState()
        self.rng = rng
        self.node: Optional[RawNode] = None
        self.doomed = False
        self.booted = False
        self.start()
        self.booted = True

    def start(self) -> None:
        if self.open_disk is not None and self.booted:
            self.disk.close()
            self.disk = self.open_disk(self.id)
        snap = self.disk.snapshot()
        self.conf = snap.metadata.conf_state
        cfg = Config(id=self.id, storage=self.disk, election_tick=10, heartbeat_tick=1,
                     applied=snap.metadata.index, max_size_per_msg=4096,
                     max_inflight_msgs=8, check_quorum=True, pre_vote=True,
                     rng=random.Random(self.rng.getrandbits(32)))
        self.node = RawNode(cfg)

    @property
    def alive(self) -> bool:
        return self.node is not None


class Checker:
    """Global registries that every step is checked against (O(changes) per step)."""

    def __init__(self) -> None:
        self.leader_of_term: Dict[int, int] = {}
        self.entry_at: Dict[Tuple[int, int], Tuple[bytes, int, int]] = {}
        self.applied_at: Dict[int, Tuple[int, bytes]] = {}
        self.hash_at: Dict[int, int] = {0: 0}
        self.max_applied = 0

    def on_leader(self, term: int, node: SimNode) -> None:
        prev = self.leader_of_term.setdefault(term, node.id)
        if prev != node.id:
            raise SafetyViolation(f"election safety: {prev} and {node.id} both lead term {term}")
        log = node.node.raft.log
        c = self.max_applied
        if c >= log.first_index() and log.term_or_zero(c) != self.applied_at[c][0]:
            raise SafetyViolation(f"leader completeness: leader {node.id} of term {term} "
                                  f"lacks committed entry {c}")
        if c > log.last_index():
            raise SafetyViolation(f"leader completeness: leader {node.id} of term {term} "
                                  f"ends at {log.last_index()} < committed {c}")

    def on_persist(self, node: SimNode, ents: list) -> None:
        log = node.node.raft.log
        prev_term = log.term_or_zero(ents[0].index - 1) if ents[0].index > 1 else 0
        for e in ents:
            key = (e.index, e.term)
            val = (e.data, int(e.type), prev_term)
            seen = self.entry_at.setdefault(key, val)
            if seen != val and not (seen[:2] == val[:2] and 0 in (seen[2], prev_term)):
                raise SafetyViolation(f"log matching: node {node.id} entry {key} is {val}, "
                                      f"another log has {seen}")
            prev_term = e.term

    def on_apply(self, node: SimNode, index: int, term: int, data: bytes) -> None:
        if index != node.sm_index + 1:
            raise SafetyViolation(f"state machine safety: node {node.id} applies {index} "
                                  f"after {node.sm_index}")
        seen = self.applied_at.setdefault(index, (term, data))
        if seen != (term, data):
            raise SafetyViolation(f"state machine safety: node {node.id} applies {(term, data)} "
                                  f"at {index}, another applied {seen}")
        node.sm_hash = zlib.crc32(data, node.sm_hash ^ index)
        node.sm_index = index
        known = self.hash_at.setdefault(index, node.sm_hash)
        if known != node.sm_hash:
            raise SafetyViolation(f"state machine safety: node {node.id} state differs at {index}")
        if index > self.max_applied:
            self.max_applied = index

    def on_install(self, node: SimNode, index: int, sm_hash: int) -> None:
        known = self.hash_at.get(index)
        if known is None or known != sm_hash:
            raise SafetyViolation(f"snapshot at {index} on node {node.id} has state {sm_hash}, "
                                  f"applied state there is {known}")


class Cluster:
    """A simulated cluster of SimNodes on a faulty network."""

    def __init__(self, size: int, seed: int, faults: Optional[Faults] = None,
                 open_disk: Optional[Callable[[int], MemoryStorage]] = None) -> None:
        self.rng = random.Random(seed)
        self.open_disk = open_disk
        self.faults = faults or Faults()
        self.size = size
        founders = tuple(range(1, size + 1))
        self.nodes: Dict[int, SimNode] = {i: SimNode(i, founders, self.rng, open_disk)
                                          for i in founders}
        self.next_id = size + 1
        self.checker = Checker()
        self.queue: List[Tuple[float, int, Message]] = []
        self.seq = 0
        self.now = 0
        self.steps = 0
        self.blocked: Set[Tuple[int, int]] = set()
        self.proposed = 0
        self.accepted: List[bytes] = []   # proposals a node took (not dropped at once)
        self.reads: Dict[bytes, int] = {}
        self.reads_served = 0
        self.pending_cc: Optional[ConfChange] = None
        self.cc_done = 0
        self.crashes = 0
        self.torn_files = 0
        self.torn_crashes = 0
        self.snapshots_sent = 0
        for n in self.nodes.values():
            self.process_ready(n)

    # ---- the Ready loop --------------------------------------------------------------

    def process_ready(self, n: SimNode) -> None:
        node = n.node
        while node is not None and node.has_ready():
            rd = node.ready()
            if n.doomed and (rd.entries or rd.hard_state is not None or rd.snapshot is not None):
                self._persist_torn(n, rd)
                return
            if rd.soft_state is not None and rd.soft_state.state == StateType.LEADER:
                self.checker.on_leader(node.raft.term, n)
            self._persist(n, rd)
            for m in rd.messages:
                self.send(m)
            if rd.snapshot is not None:
                self._install(n, rd.snapshot)
            for e in rd.committed_entries:
                self._apply(n, e)
            for rs in rd.read_states:
                self._serve_read(n, rs)
            node.advance(rd)
            self._maybe_snapshot(n)

    def _persist(self, n: SimNode, rd) -> None:
        save = getattr(n.disk, "save", None)
        if save is not None:
            save(rd.hard_state, rd.entries, rd.snapshot)  # one durable write
        else:
            if rd.snapshot is not None:
                n.disk.apply_snapshot(rd.snapshot)
            n.disk.append(rd.entries)
            if rd.hard_state is not None:
                n.disk.set_hard_state(rd.hard_state)
        if rd.entries:
            self.checker.on_persist(n, rd.entries)

    def _persist_torn(self, n: SimNode, rd) -> None:
        """Crash in the middle of persisting rd: a prefix of its records (entries, then
        the hard state) reaches the disk, maybe half of the next one; nothing is sent."""
        if rd.snapshot is not None:
            if self.rng.random() < 0.5:
                n.disk.apply_snapshot(rd.snapshot)
                n.sm_index, n.sm_hash = _SNAP.unpack(rd.snapshot.data)
        else:
            records = list(rd.entries) + ([rd.hard_state] if rd.hard_state is not None else [])
            k = self.rng.randrange(len(records) + 1)
            written = [r for r in records[:k] if not isinstance(r, HardState)]
            if written:
                n.disk.append(written)
                self.checker.on_persist(n, written)
            if k == len(rd.entries) + 1:
                n.disk.set_hard_state(rd.hard_state)
            if k < len(records) and hasattr(n.disk, "log_path"):
                self._tear_file(n.disk.log_path, records[k])
        n.node = None
        n.doomed = False
        self.torn_crashes += 1

    def _tear_file(self, path: str, record) -> None:
        """The next record was being written: part of it reached the file, unsynced."""
        from kvtrees.raft.filelog import encode_entry, encode_hard_state
        rec = encode_hard_state(record) if isinstance(record, HardState) else encode_entry(record)
        self.torn_files += 1
        with open(path, "ab") as f:
            f.write(rec[:self.rng.randrange(1, len(rec))])

    def _install(self, n: SimNode, snap) -> None:
        sm_index, sm_hash = _SNAP.unpack(snap.data)
        if sm_index != snap.metadata.index:
            raise SafetyViolation(f"snapshot data at {sm_index} labelled {snap.metadata.index}")
        self.checker.on_install(n, sm_index, sm_hash)
        n.sm_index, n.sm_hash = sm_index, sm_hash
        n.conf = snap.metadata.conf_state

    def _apply(self, n: SimNode, e) -> None:
        if e.type == EntryType.CONF_CHANGE:
            cc = ConfChange.decode(e.data)
            n.conf = n.node.apply_conf_change(cc)
            if self.pending_cc is not None and cc.type == self.pending_cc.type and \
                    cc.node_id == self.pending_cc.node_id and n.node.is_leader():
                self.pending_cc = None
                self.cc_done += 1
        if e.index <= n.sm_index:
            return  # already in the durable state machine (replay after a restart)
        self.checker.on_apply(n, e.index, e.term, e.data)

    def _serve_read(self, n: SimNode, rs) -> None:
        need = self.reads.pop(rs.request_ctx, None)
        if need is None:
            return
        if rs.index < need:
            raise SafetyViolation(f"read index {rs.index} on node {n.id} is below {need}, "
                                  f"applied before the read was asked")
        self.reads_served += 1

    def _maybe_snapshot(self, n: SimNode) -> None:
        every = self.faults.snapshot_every
        snap_index = n.disk.snapshot().metadata.index
        if not every or n.sm_index - snap_index < every or n.sm_index > n.disk.last_index():
            return
        if n.sm_index > n.node.raft.log.applied:
            return  # replaying after a restart: conf state is not current yet
        n.disk.create_snapshot(n.sm_index, n.conf, _SNAP.pack(n.sm_index, n.sm_hash))
        keep = self.rng.randrange(0, 10)
        if n.sm_index - keep > n.disk.first_index():
            n.disk.compact(n.sm_index - keep)

    # ---- the network -----------------------------------------------------------------

    def send(self, m: Message) -> None:
        f = self.faults
        if self.rng.random() < f.drop or (m.frm, m.to) in self.blocked:
            self._dropped(m)
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            self.seq += 1
            delay = f.late_ticks if self.rng.random() < f.late else f.max_delay
            at = self.now + self.rng.random() * delay
            heapq.heappush(self.queue, (at, self.seq, _copy(m)))

    def _dropped(self, m: Message) -> None:
        if m.type == MsgType.SNAP:
            sender = self.nodes.get(m.frm)
            if sender is not None and sender.alive:
                sender.node.report_snapshot(m.to, ok=False)
                self.process_ready(sender)

    def deliver(self, m: Message) -> None:
        dst = self.nodes.get(m.to)
        if dst is None or not dst.alive or (m.frm, m.to) in self.blocked:
            self._dropped(m)
            return
        self.steps += 1
        try:
            dst.node.step(m)
        except (ProposalDroppedError, StepPeerNotFoundError):
            pass
        self.process_ready(dst)
        if m.type == MsgType.SNAP:
            self.snapshots_sent += 1
            sender = self.nodes.get(m.frm)
            if sender is not None and sender.alive:
                sender.node.report_snapshot(m.to, ok=True)
                self.process_ready(sender)

    # ---- time and faults -------------------------------------------------------------

    def tick(self) -> None:
        """Deliver everything due, then tick every live node once, then maybe a fault."""
        self.now += 1
        q = self.queue
        while q and q[0][0] <= self.now:
            self.deliver(heapq.heappop(q)[2])
        for n in list(self.nodes.values()):
            if n.alive:
                self.steps += 1
                n.node.tick()
                self.process_ready(n)
        self._inject_faults()

    def _inject_faults(self) -> None:
        f, r = self.faults, self.rng.random
        if r() < f.propose:
            self.propose(b"v%d" % self.proposed)
        if r() < f.read:
            self.read()
        if r() < f.crash:
            self.crash(torn=r() < f.torn_crash)
        if r() < f.restart:
            self.restart()
        if r() < f.partition:
            self.partition()
        if self.blocked and r() < f.heal:
            self.blocked = set()
        if r() < f.transfer:
            self.transfer()
        if r() < f.conf_change or self.pending_cc is not None and r() < 0.05:
            self.conf_change()

    def live(self) -> List[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def leader(self) -> Optional[SimNode]:
        best = None
        for n in self.live():
            if n.node.is_leader() and (best is None or n.node.raft.term > best.node.raft.term):
                best = n
        return best

    def propose(self, data: bytes) -> None:
        live = self.live()
        if not live:
            return
        n = self.rng.choice(live)
        self.proposed += 1
        try:
            n.node.propose(data)
        except ProposalDroppedError:
            return
        self.accepted.append(data)
        self.process_ready(n)

    def read(self) -> None:
        live = self.live()
        if not live:
            return
        n = self.rng.choice(live)
        ctx = b"r%d" % self.seq
        self.seq += 1
        self.reads[ctx] = self.checker.max_applied
        n.node.read_index(ctx)
        self.process_ready(n)

    def crash(self, torn: bool = False) -> None:
        live = self.live()
        if not live:
            return
        n = self.rng.choice(live)
        self.crashes += 1
        if torn:
            n.doomed = True  # dies in the middle of persisting its next Ready
        else:
            n.node = None

    def restart(self, n: Optional[SimNode] = None) -> None:
        if n is None:
            dead = [x for x in self.nodes.values() if not x.alive]
            if not dead:
                return
            n = self.rng.choice(dead)
        n.start()
        self.process_ready(n)

    def partition(self) -> None:
        ids = sorted(self.nodes)
        self.rng.shuffle(ids)
        cut = self.rng.randrange(1, len(ids))
        a, b = ids[:cut], ids[cut:]
        one_way = self.rng.random() < 0.3
        self.blocked = {(x, y) for x in a for y in b}
        if not one_way:
            self.blocked |= {(y, x) for x in a for y in b}

    def transfer(self) -> None:
        ld = self.leader()
        if ld is None:
            return
        voters = [v for v in ld.conf.voters if v != ld.id]
        if voters:
            ld.node.transfer_leader(self.rng.choice(voters))
            self.process_ready(ld)

    def conf_change(self) -> None:
        """Cycle: add a learner, promote it, remove a random voter (one at a time)."""
        ld = self.leader()
        if ld is None:
            return
        cc = self.pending_cc or self._next_conf_change(ld.conf)
        if cc is None:
            return
        self.pending_cc = cc
        try:
            ld.node.propose_conf_change(cc)
        except ProposalDroppedError:
            return
        self.process_ready(ld)

    def _next_conf_change(self, conf: ConfState) -> Optional[ConfChange]:
        if conf.learners:
            return ConfChange(ConfChangeType.ADD_NODE, conf.learners[0])
        if len(conf.voters) > self.size:
            return ConfChange(ConfChangeType.REMOVE_NODE, self.rng.choice(conf.voters))
        new = self.next_id
        self.next_id += 1
        self.nodes[new] = SimNode(new, (), self.rng, self.open_disk)
        return ConfChange(ConfChangeType.ADD_LEARNER, new)

    # ---- driving ---------------------------------------------------------------------

    def run(self, steps: int) -> None:
        """Run until at least ``steps`` steps (deliveries + node ticks) were taken."""
        while self.steps < steps:
            self.tick()

    def heal_and_settle(self, ticks: int = 400) -> None:
        """Stop faults, restart everyone, and let the cluster converge."""
        self.faults = Faults(drop=0, duplicate=0, max_delay=1.0, late=0, crash=0, restart=0,
                             partition=0, heal=0, propose=0.0, read=0, transfer=0,
                             conf_change=0, snapshot_every=self.faults.snapshot_every)
        self.blocked = set()
        for n in self.nodes.values():
            n.doomed = False  # a crash scheduled before the healing is called off
            if not n.alive:
                self.restart(n)
        for _ in range(ticks):
            self.tick()

    def members(self) -> Set[int]:
        ld = self.leader()
        conf = ld.conf if ld is not None else ConfState()
        return set(conf.voters) | set(conf.learners)


def _copy(m: Message) -> Message:
    return Message(m.type, to=m.to, frm=m.frm, term=m.term, log_term=m.log_term, index=m.index,
                   entries=m.entries, commit=m.commit, snapshot=m.snapshot, reject=m.reject,
                   reject_hint=m.reject_hint, context=m.context)
