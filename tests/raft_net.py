"""A tiny synchronous network of RawNodes for the Raft rule tests.

Every node's Ready is handled as the contract says (persist to its MemoryStorage,
then send, then apply); ``pump`` delivers messages until the network is quiet.
Links can be cut per direction. No randomness except each node's seeded election
timeout.
"""

from __future__ import annotations

import random
from typing import Dict, List, Optional, Sequence, Set, Tuple

from kvtrees.raft import (ConfChange, Config, EntryType, MemoryStorage, Message, MsgType,
                          ProposalDroppedError, RawNode, StateType, StepPeerNotFoundError)


class Net:
    def __init__(self, ids: Sequence[int], learners: Sequence[int] = (), **cfg) -> None:
        self.ids = list(ids) + list(learners)
        self.cfg = dict(cfg)
        self.storage: Dict[int, MemoryStorage] = {i: MemoryStorage() for i in self.ids}
        self.peers, self.learners = list(ids), list(learners)
        self.nodes: Dict[int, RawNode] = {i: self._make(i) for i in self.ids}
        self.cut: Set[Tuple[int, int]] = set()
        self.applied: Dict[int, List[bytes]] = {i: [] for i in self.ids}
        self.read_states: Dict[int, list] = {i: [] for i in self.ids}
        self.sent: List[Message] = []       # every message delivered or dropped, in order
        self.outbox: List[Message] = []
        self.hold = False                   # keep messages in the outbox (no delivery)

    def _make(self, i: int, storage: Optional[MemoryStorage] = None) -> RawNode:
        cfg = dict(election_tick=10, heartbeat_tick=1, rng=random.Random(i))
        cfg.update(self.cfg)
        return RawNode(Config(id=i, storage=storage or self.storage[i], peers=self.peers,
                              learners=self.learners, **cfg))

    def raft(self, i: int):
        return self.nodes[i].raft

    def add_node(self, i: int) -> None:
        """A brand-new empty member (its config comes from the leader's log/snapshot)."""
        self.ids.append(i)
        self.storage[i] = MemoryStorage()
        cfg = dict(election_tick=10, heartbeat_tick=1, rng=random.Random(i))
        cfg.update(self.cfg)
        self.nodes[i] = RawNode(Config(id=i, storage=self.storage[i], **cfg))
        self.applied[i] = []
        self.read_states[i] = []

    def restart(self, i: int) -> None:
        """Crash and restart: volatile state lost, storage kept."""
        self.nodes[i] = self._make(i)

    def handle_ready(self, i: int) -> None:
        n = self.nodes[i]
        while n.has_ready():
            rd = n.ready()
            st = self.storage[i]
            if rd.snapshot is not None:
                st.apply_snapshot(rd.snapshot)
            st.append(rd.entries)
            if rd.hard_state is not None:
                st.set_hard_state(rd.hard_state)
            self.outbox.extend(rd.messages)
            for e in rd.committed_entries:
                if e.type == EntryType.CONF_CHANGE:
                    n.apply_conf_change(ConfChange.decode(e.data))
                elif e.data:
                    self.applied[i].append(e.data)
            self.read_states[i].extend(rd.read_states)
            n.advance(rd)

    def pump(self, limit: int = 10_000) -> None:
        for i in list(self.nodes):
            self.handle_ready(i)
        rounds = 0
        while self.outbox and not self.hold:
            rounds += 1
            assert rounds < limit, "network did not quiesce"
            m = self.outbox.pop(0)
            self.sent.append(m)
            if (m.frm, m.to) in self.cut or m.to not in self.nodes:
                continue
            self.deliver(m)

    def deliver(self, m: Message) -> None:
        try:
            self.nodes[m.to].step(m)
        except (ProposalDroppedError, StepPeerNotFoundError):
            pass
        self.handle_ready(m.to)

    def isolate(self, i: int) -> None:
        for j in self.ids:
            if j != i:
                self.cut |= {(i, j), (j, i)}

    def heal(self) -> None:
        self.cut = set()

    def tick(self, i: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[i].tick()
            self.pump()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for i in self.ids:
                self.nodes[i].tick()
            self.pump()

    def elect(self, i: int) -> None:
        self.nodes[i].campaign()
        self.pump()
        assert self.raft(i).state == StateType.LEADER, f"{i} did not win"

    def propose(self, i: int, data: bytes) -> None:
        self.nodes[i].propose(data)
        self.pump()

    def msgs_of(self, mtype: MsgType, frm: int = 0, to: int = 0) -> List[Message]:
        return [m for m in self.sent if m.type == mtype and (not frm or m.frm == frm)
                and (not to or m.to == to)]
